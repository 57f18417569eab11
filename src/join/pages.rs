//! The redirector's pages, in English, Spanish and Portuguese (the
//! languages RyzeAPI's vendor serves), chosen by `Accept-Language`: small,
//! readable on a phone, no JavaScript, nothing loaded from elsewhere.

/// A language of the pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lang {
    /// English, the default.
    En,
    /// Spanish.
    Es,
    /// Portuguese.
    Pt,
}

impl Lang {
    /// The reader's language among ours, by `Accept-Language` (its
    /// quality values honoured); English when none of ours is asked for.
    pub(crate) fn from_header(header: Option<&str>) -> Lang {
        let mut best = (Lang::En, -1.0f32);
        for part in header.unwrap_or("").split(',').take(16) {
            let mut pieces = part.trim().split(';');
            let tag = pieces.next().unwrap_or("").trim().to_ascii_lowercase();
            let q = pieces
                .find_map(|p| p.trim().strip_prefix("q="))
                .and_then(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            let lang = match tag.split('-').next().unwrap_or("") {
                "en" => Lang::En,
                "es" => Lang::Es,
                "pt" => Lang::Pt,
                _ => continue,
            };
            if q > best.1 {
                best = (lang, q);
            }
        }
        best.0
    }

    fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Es => "es",
            Lang::Pt => "pt",
        }
    }
}

/// The page a limited link shows before it is spent: a Join button that
/// POSTs, so that link previews (which only GET) spend nothing.
pub(crate) fn join(lang: Lang) -> String {
    let (title, text, button) = match lang {
        Lang::En => (
            "Join the WhatsApp group",
            "You were invited to a WhatsApp group. This link is personal and stops working after a while or a number of uses: press the button to join.",
            "Join",
        ),
        Lang::Es => (
            "Unirse al grupo de WhatsApp",
            "Te invitaron a un grupo de WhatsApp. Este enlace es personal y deja de funcionar pasado un tiempo o un número de usos: pulsa el botón para unirte.",
            "Unirme",
        ),
        Lang::Pt => (
            "Entrar no grupo do WhatsApp",
            "Você foi convidado para um grupo do WhatsApp. Este link é pessoal e deixa de funcionar depois de um tempo ou de um número de usos: toque no botão para entrar.",
            "Entrar",
        ),
    };
    page(
        lang,
        title,
        &format!(
            "<p>{text}</p>\n<form method=\"post\"><button type=\"submit\">{button}</button></form>"
        ),
    )
}

/// The page of a link that no longer works (410).
pub(crate) fn gone(lang: Lang) -> String {
    let (title, text) = match lang {
        Lang::En => (
            "This link no longer works",
            "This invitation link has expired, was withdrawn or has been used up. Ask the person who sent it to you for a new link.",
        ),
        Lang::Es => (
            "Este enlace ya no funciona",
            "Este enlace de invitación caducó, fue retirado o ya se usó todas las veces permitidas. Pide un enlace nuevo a quien te lo envió.",
        ),
        Lang::Pt => (
            "Este link não funciona mais",
            "Este link de convite expirou, foi retirado ou já foi usado todas as vezes permitidas. Peça um link novo a quem o enviou para você.",
        ),
    };
    page(lang, title, &format!("<p>{text}</p>"))
}

/// The page of a link whose group's invite cannot be learned now (503).
pub(crate) fn unavailable(lang: Lang) -> String {
    let (title, text) = match lang {
        Lang::En => (
            "Try again in a minute",
            "The group's invitation cannot be reached right now. Please try again in a minute.",
        ),
        Lang::Es => (
            "Inténtalo de nuevo en un minuto",
            "La invitación del grupo no está disponible en este momento. Vuelve a intentarlo en un minuto.",
        ),
        Lang::Pt => (
            "Tente de novo em um minuto",
            "O convite do grupo não está disponível agora. Tente de novo em um minuto.",
        ),
    };
    page(lang, title, &format!("<p>{text}</p>"))
}

fn page(lang: Lang, title: &str, body: &str) -> String {
    format!(
        "<!doctype html>
<html lang=\"{}\">
<head>
<meta charset=\"utf-8\">
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">
<meta name=\"robots\" content=\"noindex\">
<title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 28rem; margin: 3rem auto; padding: 0 1.25rem; line-height: 1.5; color: #1b1b1b; }}
h1 {{ font-size: 1.4rem; }}
button {{ font-size: 1.15rem; padding: 0.8rem 2.5rem; border: 0; border-radius: 0.5rem; background: #1f8a4c; color: #fff; }}
</style>
</head>
<body>
<h1>{title}</h1>
{body}
</body>
</html>
",
        lang.code()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_language_follows_accept_language_and_its_quality_values() {
        assert_eq!(Lang::from_header(None), Lang::En);
        assert_eq!(Lang::from_header(Some("pt-BR,pt;q=0.9,en;q=0.8")), Lang::Pt);
        assert_eq!(
            Lang::from_header(Some("de-DE, es;q=0.7, en;q=0.5")),
            Lang::Es
        );
        assert_eq!(Lang::from_header(Some("en;q=0.3, es;q=0.9")), Lang::Es);
        assert_eq!(Lang::from_header(Some("fr, de")), Lang::En);
    }

    #[test]
    fn pages_load_nothing_from_elsewhere_and_run_no_script() {
        for lang in [Lang::En, Lang::Es, Lang::Pt] {
            for html in [join(lang), gone(lang), unavailable(lang)] {
                assert!(!html.contains("<script"), "{html}");
                assert!(!html.contains("http"), "{html}");
            }
        }
        assert!(gone(Lang::Es).contains("Pide un enlace nuevo"));
    }
}
