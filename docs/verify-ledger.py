#!/usr/bin/env python3
"""Checks an invite-rotator history without invite-rotator (see docs/audit.md).

  verify-ledger.py --database history.db [--public-key audit.pub]
  verify-ledger.py --bundle bundle.jsonl --public-key audit.pub

Exit 0 intact, 1 not. Needs Python 3 and `cryptography` (Debian: python3-cryptography).
"""
import argparse, hashlib, json, re, sqlite3, sys
from datetime import datetime
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key, Encoding, PublicFormat

GENESIS = "0" * 64
COLUMNS = {"rotation": "id", "group": "group_name", "jid": "group_jid", "instance": "instance",
           "trigger": "trigger", "due": "scheduled_for", "started": "started_at", "finished": "finished_at",
           "status": "status", "attempts": "attempts", "old_code": "old_invite_code",
           "new_code": "new_invite_code", "new_link": "new_invite_link", "error": "error"}

ENTRY_KEYS = set(COLUMNS) | {"seq", "prev", "at"}
CHECKPOINT_KEYS = {"at", "hash", "key", "seq", "signature"}
INTS = {"seq", "rotation", "attempts"}

def canon(o): return json.dumps(o, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
def sha(line): return hashlib.sha256(line.encode()).hexdigest()
def fail(why): print("NOT INTACT:", why); sys.exit(1)
def parse(line, keys=ENTRY_KEYS):
    try: o = json.loads(line)
    except ValueError: fail(f"not JSON: {line[:60]}")
    if not isinstance(o, dict) or set(o) != keys or canon(o) != line: fail(f"not an entry in the canonical encoding: {line[:60]}")
    if any(type(o[k]) is not int for k in INTS & keys) or any(type(v) not in (str, int, type(None)) for v in o.values()): fail(f"a value of the wrong type: {line[:60]}")
    return o

FACTS = ["group", "jid", "instance", "trigger", "due", "started", "finished", "status", "attempts",
         "old_code", "new_code", "new_link", "error", "rotation"]
UNKNOWN_SETTLED = {"status", "attempts", "new_code", "new_link", "error", "finished"}
LATE_RESET = {"status", "new_code", "new_link", "error", "finished"}

def when(t):
    """An RFC 3339 time, or None."""
    if not isinstance(t, str) or not re.fullmatch(r"\d{4}-\d\d-\d\d[Tt]\d\d:\d\d:\d\d(\.\d+)?([Zz]|[+-]\d\d:\d\d)", t): return None
    try: return datetime.fromisoformat(re.sub(r"[Zz]$", "+00:00", t))
    except ValueError: return None

def wrong_restatement(p, n, before, group_latest):
    """The fact in which n restates p (the rotation's entry before) otherwise than the workflow
    does (an unknown settled, a late reset of a failed row, an outside change placed just before
    it: docs/audit.md), "" when it changes nothing, None when it is such a step. before is the
    entry just before n, group_latest the seq of its group's latest entry before it."""
    changed = [f for f in FACTS if p[f] != n[f]]
    if not changed: return ""
    if n["status"] == "pending": return "status"
    appended = n["error"] is not None and (p["error"] is None or n["error"].startswith(p["error"] + "; "))
    started, finished = (when(before["started"]) if before else None), when(p["finished"])
    placed = (before is not None and before["trigger"] == "outside" and before["jid"] == n["jid"]
              and before["rotation"] != n["rotation"] and before["new_code"] is not None
              and before["new_code"] == n["old_code"] and before["old_code"] == p["old_code"]
              and group_latest == p["seq"] and started is not None and finished is not None
              and started < finished)
    if "old_code" in changed and set(changed) <= {"old_code", "error"}:
        if p["trigger"] == "outside" or not placed: return "old_code"
        return None if appended else "error"
    unknown, late = p["status"] == "unknown", p["status"] == "failed" and p["new_code"] is None
    allowed = UNKNOWN_SETTLED if unknown else LATE_RESET if late else set()
    bad = [f for f in changed if f not in allowed]
    if bad: return bad[0]
    if ("new_code" in changed or "new_link" in changed) and n["new_link"] != (
            None if n["new_code"] is None else "https://chat.whatsapp.com/" + n["new_code"]): return "new_link"
    if unknown:
        if n["status"] == "unknown": return "status"
        return "attempts" if n["attempts"] < p["attempts"] else None
    if n["status"] != "succeeded": return "status"
    if n["new_code"] is None or n["new_link"] is None: return "new_code"
    return None if appended else "error"

def chain(lines, first_prev=None):
    """Entries in order -> ({seq: hash}, {rotation: latest entry}, anchor)."""
    hashes, latest, prev, anchor, before = {}, {}, (0, first_prev) if first_prev else None, first_prev, None
    by_group, outside = {}, {}  # jid -> latest seq; outside entry's seq -> its group's latest before
    for line in lines:
        e = parse(line)
        if prev is None: prev, anchor = (e["seq"] - 1, e["prev"]), e["prev"]
        if e["seq"] != prev[0] + 1 or e["prev"] != prev[1]: fail(f"ledger entry {prev[0] + 1}: the chain breaks")
        p = latest.get(e["rotation"])
        if p is not None:
            field = wrong_restatement(p, e, before, outside.get(e["seq"] - 1))
            if field == "": fail(f"ledger entry {e['seq']} restates rotation {e['rotation']} as entry {p['seq']} had it")
            if field: fail(f"ledger entry {e['seq']} restates rotation {e['rotation']}: {field} was {p[field]!r} (entry {p['seq']}), it says {e[field]!r}")
        if e["trigger"] == "outside": outside[e["seq"]] = by_group.get(e["jid"])
        by_group[e["jid"]] = e["seq"]
        prev = (e["seq"], sha(line)); hashes[e["seq"]] = prev[1]; latest[e["rotation"]] = e; before = e
    return hashes, latest, (anchor if prev else None)

def checkpoints(lines, hashes, anchor, key):
    for line in lines:
        c = parse(line, CHECKPOINT_KEYS); sig = c.pop("signature", "")
        pub = key or Ed25519PublicKey.from_public_bytes(bytes.fromhex(c["key"]))
        raw = pub.public_bytes(Encoding.Raw, PublicFormat.Raw).hex()
        if c["key"] != raw or sig != bytes.fromhex(sig).hex(): fail(f"checkpoint at {c['at']}: another key or spelling")
        try: pub.verify(bytes.fromhex(sig), canon(c).encode())
        except Exception: fail(f"checkpoint at {c['at']}: the signature does not verify")
        reached = hashes.get(c["seq"], anchor if c["seq"] == min(hashes, default=1) - 1 else None)
        if reached != c["hash"]: fail(f"checkpoint at {c['at']} covers entry {c['seq']}, which the ledger no longer reaches")
    return [json.loads(l)["seq"] for l in lines]

a = argparse.ArgumentParser(); a.add_argument("--database"); a.add_argument("--bundle"); a.add_argument("--public-key")
args = a.parse_args()
key = load_pem_public_key(open(args.public_key, "rb").read()) if args.public_key else None
if args.bundle:
    try: text = open(args.bundle, encoding="utf-8").read()
    except UnicodeDecodeError: fail("the bundle is not UTF-8 text")
    if not text.endswith("\n") or not key: fail("the bundle is cut, or no --public-key")
    lines = text[:-1].split("\n"); n = next((i for i, l in enumerate(lines) if l.endswith('"}') and ',"signature":"' in l), len(lines))
    hashes, _, anchor = chain(lines[:n])
    covered = checkpoints(lines[n:], hashes, anchor or GENESIS, key)
    if not covered or (max(hashes) if hashes else 0) not in covered: fail("no checkpoint covers the bundle's last entry")
else:
    db = sqlite3.connect(f"file:{args.database}?mode=ro", uri=True); db.row_factory = sqlite3.Row
    if not db.execute("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'ledger'").fetchone()[0]:
        settled = db.execute("SELECT COUNT(*) FROM rotations WHERE status != 'pending'").fetchone()[0]
        if settled: fail(f"no ledger: the history holds {settled} settled rotation(s) but not the ledger's tables")
        print("intact (no ledger, no settled rotation)"); sys.exit(0)
    rows = db.execute("SELECT seq, rotation_id, entry, hash FROM ledger ORDER BY seq").fetchall()
    for i, r in enumerate(rows, 1):
        if r["seq"] != i or sha(r["entry"]) != r["hash"]: fail(f"ledger entry {i} is missing or changed")
        if json.loads(r["entry"]).get("rotation") != r["rotation_id"]: fail(f"ledger entry {i} is filed under another rotation")
    hashes, latest, anchor = chain([r["entry"] for r in rows], GENESIS)
    covered = checkpoints([r[0] for r in db.execute("SELECT line FROM checkpoints ORDER BY id")], hashes, GENESIS, key)
    for row in db.execute("SELECT * FROM rotations ORDER BY id"):
        e = latest.pop(row["id"], None)
        if (e is None) != (row["status"] == "pending"): fail(f"rotation {row['id']} is {row['status']} but the ledger disagrees")
        for fact, column in COLUMNS.items():
            if e and e[fact] != row[column]: fail(f"rotation {row['id']}: {fact} is {row[column]!r}, the ledger says {e[fact]!r}")
    if latest: fail(f"rotation {min(latest)} is in the ledger but not in the rotations table")
    if key and not covered: fail("no checkpoint: nothing in this history is signed by the given key")
print("intact")
