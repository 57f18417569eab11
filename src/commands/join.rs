//! `join create`, `join list`, `join revoke`: the join links the redirector
//! (`run` with `[join]`) serves.

use super::{Failure, history_exists, load_config, print_bytes, table};
use crate::cli::{QrFormat, StatusFormat};
use crate::config::{Config, Database, Purpose};
use crate::exit::Exit;
use crate::join::{LinkState, qr, slug};
use crate::outfile::{Output, PRIVATE, Replace};
use crate::store::{JoinLink, NewJoinLink, Store};
use chrono::{DateTime, Utc};
use std::io::Write;
use std::path::{Path, PathBuf};

/// What `join create` was asked for.
#[derive(Debug)]
pub(super) struct Create {
    /// The group's name or JID.
    pub group: String,
    /// The link's name.
    pub name: Option<String>,
    /// When it stops working.
    pub expires: Option<DateTime<Utc>>,
    /// How many times it works.
    pub max_uses: Option<u32>,
    /// The operator's note.
    pub note: Option<String>,
    /// A QR code too.
    pub qr: Option<QrFormat>,
    /// Where the QR code goes.
    pub output: Option<PathBuf>,
}

/// `join create`: makes the link (and its QR code) and prints its URL.
pub(super) async fn create(config_path: &Path, args: Create) -> Result<Exit, Failure> {
    let config = load_config(config_path, Purpose::Read)?;
    let Some(join) = &config.join else {
        return Err(Failure::ConfigLacks(format!(
            "{}: [join] is not set: links are served by `run` on join.listen and printed under join.public_url",
            config_path.display()
        )));
    };
    match (args.qr, &args.output) {
        (Some(QrFormat::Png | QrFormat::Svg), None) => {
            return Err(Failure::Usage(
                "--qr png and --qr svg write to a file: add --output FILE".into(),
            ));
        }
        (None | Some(QrFormat::Terminal), Some(_)) => {
            return Err(Failure::Usage(
                "--output is the file of --qr png or --qr svg".into(),
            ));
        }
        _ => {}
    }
    let Some(group) = config
        .groups
        .iter()
        .find(|g| g.name == args.group || g.jid.as_str() == args.group)
    else {
        return Err(Failure::Usage(format!(
            "no group {:?} in {} (a group's name or JID)",
            args.group,
            config_path.display()
        )));
    };
    let runtime = |e: &dyn std::fmt::Display| Failure::Runtime(e.to_string());
    let store = Store::connect(&config.database)
        .await
        .map_err(|e| runtime(&e))?;
    let slug = slug::new().map_err(|e| runtime(&e))?;
    let name = match &args.name {
        Some(name) => name.trim().to_owned(),
        None => {
            let taken = store.join_links().await.map_err(|e| runtime(&e))?;
            (1..)
                .map(|n| format!("{}-{n}", group.name))
                .find(|n| !taken.iter().any(|l| &l.name == n))
                .unwrap_or_default()
        }
    };
    if name.is_empty() || name.chars().any(char::is_control) {
        return Err(Failure::Usage(
            "--name must be printable and not empty".into(),
        ));
    }
    let new = NewJoinLink {
        name: &name,
        slug: &slug,
        group_name: &group.name,
        group_jid: group.jid.as_str(),
        expires_at: args.expires,
        max_uses: args.max_uses.map(i64::from),
        note: args.note.as_deref(),
    };
    // The QR code first: a link is made only once its code is drawn.
    let url = join.link(&slug);
    let mut out = format!("{url}\n");
    let image = match args.qr {
        Some(QrFormat::Terminal) => {
            out.push_str(&qr::terminal(&url).map_err(|e| runtime(&e))?);
            None
        }
        Some(QrFormat::Png) => Some(qr::png(&url).map_err(|e| runtime(&e))?),
        Some(QrFormat::Svg) => Some(qr::svg(&url).map_err(|e| runtime(&e))?.into_bytes()),
        None => None,
    };
    // Written to a temporary file (0600: the slug in it is the credential)
    // and put in place only once the link is made; on any failure only the
    // temporary file goes, never a file that was at --output.
    let file = match (&image, &args.output) {
        (Some(bytes), Some(path)) => {
            let mut file = Output::create(path, PRIVATE, Replace::Yes).map_err(|e| runtime(&e))?;
            file.write_all(bytes)
                .map_err(|e| Failure::Runtime(format!("cannot write {}: {e}", path.display())))?;
            Some(file)
        }
        _ => None,
    };
    if !store
        .create_join_link(&new)
        .await
        .map_err(|e| runtime(&e))?
    {
        return Err(Failure::Runtime(format!(
            "a join link named {name:?} exists already: choose another --name"
        )));
    }
    if let Some(file) = file {
        file.commit().map_err(|e| {
            Failure::Runtime(format!(
                "join link {name:?} made, but its QR code was not: {e} (`join revoke {name}` withdraws the link)"
            ))
        })?;
    }
    eprintln!("join link {name:?} for group {} made", group.name);
    if let Some(path) = args.output.as_ref().filter(|_| image.is_some()) {
        eprintln!("QR code written to {}", path.display());
    }
    print_bytes(out.as_bytes())
}

/// `join list`: every link, as a table or JSON Lines.
pub(super) async fn list(config_path: &Path, format: StatusFormat) -> Result<Exit, Failure> {
    let config = load_config(config_path, Purpose::Read)?;
    let Some(store) = open_existing(&config).await? else {
        return print_bytes(b"");
    };
    let links = store
        .join_links()
        .await
        .map_err(|e| Failure::Runtime(e.to_string()))?;
    let now = Utc::now();
    let url = |l: &JoinLink| match &config.join {
        Some(join) => join.link(&l.slug),
        None => format!("/j/{}", l.slug),
    };
    let out = match format {
        StatusFormat::Json => {
            let mut out = String::new();
            for l in &links {
                let mut line =
                    serde_json::to_value(l).map_err(|e| Failure::Runtime(e.to_string()))?;
                if let Some(o) = line.as_object_mut() {
                    o.insert("url".into(), url(l).into());
                    o.insert("state".into(), LinkState::of(l, now).as_str().into());
                }
                out.push_str(&line.to_string());
                out.push('\n');
            }
            out
        }
        StatusFormat::Table => {
            let rows: Vec<Vec<String>> = links
                .iter()
                .map(|l| {
                    vec![
                        l.name.clone(),
                        l.group_name.clone(),
                        url(l),
                        l.uses.to_string(),
                        l.max_uses.map_or_else(|| "-".into(), |m| m.to_string()),
                        l.expires_at
                            .as_ref()
                            .map_or_else(|| "-".into(), ToString::to_string),
                        LinkState::of(l, now).as_str().to_owned(),
                        l.note.clone().unwrap_or_default(),
                    ]
                })
                .collect();
            table::render(
                &[
                    "NAME", "GROUP", "URL", "USES", "MAX", "EXPIRES", "STATE", "NOTE",
                ],
                &rows,
            )
        }
    };
    print_bytes(out.as_bytes())
}

/// `join revoke`: the link answers 410 from now on.
pub(super) async fn revoke(config_path: &Path, name: &str) -> Result<Exit, Failure> {
    let config = load_config(config_path, Purpose::Read)?;
    let missing = || Failure::Runtime(format!("no join link named {name:?} in use"));
    let Some(store) = open_existing(&config).await? else {
        return Err(missing());
    };
    if !store
        .revoke_join_link(name)
        .await
        .map_err(|e| Failure::Runtime(e.to_string()))?
    {
        return Err(missing());
    }
    eprintln!("join link {name:?} revoked: it answers 410 from now on");
    Ok(Exit::Success)
}

/// The history database, unless it is a SQLite file not made yet.
async fn open_existing(config: &Config) -> Result<Option<Store>, Failure> {
    if let Database::Sqlite(path) = &config.database
        && !history_exists(path)?
    {
        return Ok(None);
    }
    Store::connect(&config.database)
        .await
        .map(Some)
        .map_err(|e| Failure::Runtime(e.to_string()))
}
