//! Checkpoints in their C2SP forms, and the cosignatures of witnesses.
//!
//! Whoever can write the store can rewrite the access log and let the daemon sign the new
//! one. The high-water mark ([`super::mark`]) stops that on one host; witnesses make it
//! visible anywhere. Every signed checkpoint also exists as a C2SP checkpoint
//! (c2sp.org/tlog-checkpoint: origin line, tree size, base64 root hash) inside a C2SP signed
//! note (c2sp.org/signed-note), signed with the log's own Ed25519 key (key type 0x01, key name
//! = the origin). The daemon submits these notes to witnesses (c2sp.org/tlog-witness) with a
//! consistency proof from the size each witness last cosigned; a witness cosigns
//! (c2sp.org/tlog-cosignature, `cosignature/v1`, Ed25519, key type 0x04) only a checkpoint
//! that extends everything it saw of the origin, so it never cosigns two roots for one size.
//! A log rewritten behind the vault's back then gets no cosignature, and an auditor who
//! requires them sees it.
//!
//! The `signed_note` crate does the note grammar (text, blank line, signature lines), key
//! ids and the check of a note against a set of known keys, with its `StandardVerifier` for
//! the log's key. This module adds what that crate has no notion of: the checkpoint body, the
//! `cosignature/v1` verifier (timestamped signatures over a prefixed message), vkeys of type
//! 0x04, signing with the log's key (held by ring), and the witness protocol's request body.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ring::signature::{ED25519, UnparsedPublicKey};
use serde::{Deserialize, Serialize};
use signed_note::{Note, NoteError, StandardVerifier, Verifier, VerifierList};

use super::checkpoint::SigningKey;
use super::mark::key_fingerprint;
use super::merkle::Hash;
use crate::error::{Error, InvalidInput, Result};

/// Signed-note key type of the log's Ed25519 key.
pub const LOG_KEY_TYPE: u8 = 0x01;
/// Signed-note key type of an Ed25519 `cosignature/v1` key (c2sp.org/tlog-cosignature).
pub const COSIGNATURE_KEY_TYPE: u8 = 0x04;
/// Most consistency proof lines a request may carry (c2sp.org/tlog-witness).
pub const MAX_PROOF_LINES: usize = 63;
/// Longest origin accepted: a schema-less URL, not a document.
const MAX_ORIGIN: usize = 255;
/// Length of a `cosignature/v1` signature: an 8-byte timestamp and an Ed25519 signature.
const COSIGNATURE_LEN: usize = 8 + 64;

/// The origin a log gets when none is configured: stable for the life of its signing key,
/// and distinct between vaults (`vault.local/` and the first 16 hex digits of the key's
/// SHA-256 fingerprint, the one the high-water mark records).
pub fn default_origin(public_key: &[u8; 32]) -> String {
    let fingerprint = key_fingerprint(public_key);
    format!("vault.local/{}", &fingerprint[..16])
}

/// Checks that `origin` can be a checkpoint's origin line and a note's key name: non-empty,
/// at most 255 bytes, no space, no `+`, no control character.
pub fn check_origin(origin: &str) -> Result<()> {
    if origin.len() > MAX_ORIGIN
        || !signed_note::is_key_name_valid(origin)
        || origin.chars().any(char::is_control)
    {
        return Err(InvalidInput::new(
            "audit_origin",
            "an origin is one word of at most 255 bytes without spaces, '+' or control \
             characters, such as vault.example.fr/access-log",
        )
        .into());
    }
    Ok(())
}

/// The C2SP checkpoint body: origin, size and base64 root, each line ending in a newline.
pub fn checkpoint_body(origin: &str, size: u64, root: &Hash) -> String {
    format!("{origin}\n{size}\n{}\n", B64.encode(root))
}

/// Parses a checkpoint body of exactly three lines in canonical form (this log writes no
/// extension lines, so a body with more is not one of its checkpoints).
pub fn parse_checkpoint_body(text: &str) -> Option<(String, u64, Hash)> {
    let mut lines = text.strip_suffix('\n')?.split('\n');
    let (origin, size, root) = (lines.next()?, lines.next()?, lines.next()?);
    if lines.next().is_some() || origin.is_empty() {
        return None;
    }
    let n: u64 = size.parse().ok()?;
    // Canonical forms only, so one checkpoint has one text (no leading zeros, no padding
    // variants of the base64).
    if n.to_string() != size {
        return None;
    }
    let hash: Hash = B64.decode(root).ok()?.try_into().ok()?;
    if B64.encode(hash) != root {
        return None;
    }
    Some((origin.to_owned(), n, hash))
}

/// The log key's signed-note key id: SHA-256(origin ‖ "\n" ‖ 0x01 ‖ public key)\[:4\].
pub fn log_key_id(origin: &str, public_key: &[u8; 32]) -> u32 {
    signed_note::key_id(origin, &typed_key(LOG_KEY_TYPE, public_key))
}

/// The log's verifier key in the signed-note vkey form, `<origin>+<key id>+<base64(0x01 ‖
/// public key)>`: what a witness or an auditor is configured with.
pub fn log_vkey(origin: &str, public_key: &[u8; 32]) -> String {
    format!(
        "{origin}+{:08x}+{}",
        log_key_id(origin, public_key),
        B64.encode(typed_key(LOG_KEY_TYPE, public_key))
    )
}

fn typed_key(key_type: u8, public_key: &[u8; 32]) -> Vec<u8> {
    let mut key = Vec::with_capacity(33);
    key.push(key_type);
    key.extend_from_slice(public_key);
    key
}

/// A signature line, `— <name> <base64(key id ‖ signature)>` and its newline.
pub fn signature_line(name: &str, key_id: u32, signature: &[u8]) -> String {
    let mut bytes = key_id.to_be_bytes().to_vec();
    bytes.extend_from_slice(signature);
    format!("— {name} {}\n", B64.encode(bytes))
}

/// The signed note of checkpoint (size, root) of `origin`, signed with `key`.
pub(crate) fn sign_note(key: &SigningKey, origin: &str, size: u64, root: &Hash) -> Result<String> {
    check_origin(origin)?;
    let body = checkpoint_body(origin, size, root);
    let signature = key.sign_raw(body.as_bytes());
    let id = log_key_id(origin, &key.public_key());
    Ok(format!(
        "{body}\n{}",
        signature_line(origin, id, &signature)
    ))
}

/// A witness's Ed25519 cosigning key (c2sp.org/tlog-cosignature, `cosignature/v1`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cosigner {
    name: String,
    id: u32,
    public_key: [u8; 32],
}

impl Cosigner {
    /// The cosigner `name` with Ed25519 `public_key`.
    pub fn new(name: &str, public_key: [u8; 32]) -> Result<Self> {
        if !signed_note::is_key_name_valid(name) || name.chars().any(char::is_control) {
            return Err(InvalidInput::new(
                "witness name",
                "a key name is one word without spaces, '+' or control characters",
            )
            .into());
        }
        Ok(Self {
            name: name.to_owned(),
            id: signed_note::key_id(name, &typed_key(COSIGNATURE_KEY_TYPE, &public_key)),
            public_key,
        })
    }

    /// Parses a vkey `<name>+<hex key id>+<base64(0x04 ‖ public key)>`, checking its key id.
    pub fn from_vkey(vkey: &str) -> Result<Self> {
        let bad = |why: &str| -> Error {
            InvalidInput::new(
                "witness vkey",
                format!(
                    "{why}: a witness key is <name>+<8 hex digits>+<base64 of 0x04 and the \
                     32-byte Ed25519 key>"
                ),
            )
            .into()
        };
        let mut parts = vkey.trim().splitn(3, '+');
        let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad("not three parts"));
        };
        if id.len() != 8 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad("the key id is not 8 hex digits"));
        }
        let id = u32::from_str_radix(id, 16).map_err(|_| bad("the key id is not hex"))?;
        let key = B64.decode(key).map_err(|_| bad("the key is not base64"))?;
        match key.split_first() {
            Some((&COSIGNATURE_KEY_TYPE, rest)) if rest.len() == 32 => {}
            Some((&LOG_KEY_TYPE, _)) => {
                return Err(bad(
                    "this is a log's signing key (type 0x01), not a cosignature/v1 key (0x04)",
                ));
            }
            _ => return Err(bad("the key is not of type 0x04 with 32 bytes")),
        }
        let mut public_key = [0u8; 32];
        public_key.copy_from_slice(&key[1..]);
        let cosigner = Self::new(name, public_key)?;
        if cosigner.id != id {
            return Err(bad("the key id does not match the name and key"));
        }
        Ok(cosigner)
    }

    /// The vkey form.
    pub fn vkey(&self) -> String {
        format!(
            "{}+{:08x}+{}",
            self.name,
            self.id,
            B64.encode(typed_key(COSIGNATURE_KEY_TYPE, &self.public_key))
        )
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key id.
    pub fn key_id(&self) -> u32 {
        self.id
    }

    /// The Ed25519 public key.
    pub fn public_key(&self) -> &[u8; 32] {
        &self.public_key
    }

    /// The message a cosignature made at `timestamp` (POSIX seconds) signs over checkpoint
    /// `body`: `cosignature/v1`, `time <timestamp>`, then the body.
    pub fn message(timestamp: u64, body: &[u8]) -> Vec<u8> {
        let mut m = format!("cosignature/v1\ntime {timestamp}\n").into_bytes();
        m.extend_from_slice(body);
        m
    }
}

/// Splits a `cosignature/v1` signature into its timestamp and Ed25519 signature.
fn split_cosignature(sig: &[u8]) -> Option<(u64, &[u8])> {
    if sig.len() != COSIGNATURE_LEN {
        return None;
    }
    let (ts, sig) = sig.split_at(8);
    let ts = u64::from_be_bytes(ts.try_into().ok()?);
    // The timestamp must fit 63 bits (c2sp.org/tlog-cosignature).
    (ts <= i64::MAX as u64).then_some((ts, sig))
}

impl Verifier for Cosigner {
    fn name(&self) -> &str {
        &self.name
    }

    fn key_id(&self) -> u32 {
        self.id
    }

    fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        let Some((timestamp, sig)) = split_cosignature(sig) else {
            return false;
        };
        UnparsedPublicKey::new(&ED25519, &self.public_key)
            .verify(&Cosigner::message(timestamp, msg), sig)
            .is_ok()
    }
}

/// What is wrong with a checkpoint note.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteProblem {
    /// Not a signed note.
    #[error("not a signed note ({0})")]
    Malformed(String),
    /// A note, but not a checkpoint of the form this log writes.
    #[error("the note is not a checkpoint (origin, size, base64 root)")]
    NotCheckpoint,
    /// The log's own signature is missing or wrong.
    #[error("the log's signature on the checkpoint note is missing or does not verify")]
    BadLogSignature,
    /// A cosignature from a known witness does not verify.
    #[error("the cosignature of witness {0} does not verify")]
    BadCosignature(String),
}

/// A cosignature that verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cosigned {
    /// The witness's key name.
    pub name: String,
    /// Its key id.
    pub key_id: u32,
    /// When it cosigned, POSIX seconds.
    pub timestamp: u64,
    /// The signature line, newline included.
    pub line: String,
}

/// A checkpoint note whose log signature verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenedNote {
    /// The origin line.
    pub origin: String,
    /// Tree size.
    pub size: u64,
    /// Root hash.
    pub root: Hash,
    /// The cosignatures of `cosigners` that verified, one per witness. Signatures of
    /// other keys are ignored (c2sp.org/tlog-witness: clients ignore unknown keys).
    pub cosigned: Vec<Cosigned>,
}

/// Opens checkpoint note `note`: its body must be a checkpoint, its log signature must
/// verify with `log_public_key` under the origin it names, and every cosignature by one of
/// `cosigners` must verify (a wrong one is an error, not ignored: it was altered).
pub fn open_note(
    note: &[u8],
    log_public_key: &[u8; 32],
    cosigners: &[Cosigner],
) -> std::result::Result<OpenedNote, NoteProblem> {
    let parsed = Note::from_bytes(note).map_err(|e| NoteProblem::Malformed(e.to_string()))?;
    let text = std::str::from_utf8(parsed.text()).map_err(|_| NoteProblem::NotCheckpoint)?;
    let (origin, size, root) = parse_checkpoint_body(text).ok_or(NoteProblem::NotCheckpoint)?;
    check_origin(&origin).map_err(|_| NoteProblem::NotCheckpoint)?;
    let log_id = log_key_id(&origin, log_public_key);
    let log = StandardVerifier::new(&log_vkey(&origin, log_public_key))
        .map_err(|_| NoteProblem::BadLogSignature)?;
    let mut known: Vec<Box<dyn Verifier>> = vec![Box::new(log)];
    let mut seen = vec![(origin.clone(), log_id)];
    for c in cosigners {
        // One verifier per (name, id): the crate refuses ambiguous keys, and a witness
        // given twice is still one witness.
        if !seen.contains(&(c.name.clone(), c.id)) {
            seen.push((c.name.clone(), c.id));
            known.push(Box::new(c.clone()));
        }
    }
    let (verified, _unknown) = match parsed.verify(&VerifierList::new(known)) {
        Ok(v) => v,
        Err(NoteError::InvalidSignature { name, id }) if name == origin && id == log_id => {
            return Err(NoteProblem::BadLogSignature);
        }
        Err(NoteError::InvalidSignature { name, .. }) => {
            return Err(NoteProblem::BadCosignature(name));
        }
        Err(NoteError::UnverifiedNote) => return Err(NoteProblem::BadLogSignature),
        Err(e) => return Err(NoteProblem::Malformed(e.to_string())),
    };
    if !verified
        .iter()
        .any(|s| s.name() == origin && s.id() == log_id)
    {
        return Err(NoteProblem::BadLogSignature);
    }
    let cosigned = verified
        .iter()
        .filter(|s| !(s.name() == origin && s.id() == log_id))
        .filter_map(|s| {
            let (timestamp, _) = split_cosignature(s.signature())?;
            Some(Cosigned {
                name: s.name().to_owned(),
                key_id: s.id(),
                timestamp,
                line: String::from_utf8_lossy(&s.to_bytes()).into_owned(),
            })
        })
        .collect();
    Ok(OpenedNote {
        origin,
        size,
        root,
        cosigned,
    })
}

/// The body of a tlog-witness `add-checkpoint` request: `old <size>`, the consistency proof
/// (one base64 hash a line), a blank line, the checkpoint note.
pub fn add_checkpoint_request(old_size: u64, proof: &[Hash], note: &str) -> String {
    let mut body = format!("old {old_size}\n");
    for h in proof {
        body.push_str(&B64.encode(h));
        body.push('\n');
    }
    body.push('\n');
    body.push_str(note);
    body
}

/// An `add-checkpoint` request, parsed (the witness's side).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddCheckpoint {
    /// The size the client believes the witness last cosigned.
    pub old_size: u64,
    /// The consistency proof from `old_size` to the checkpoint's size.
    pub proof: Vec<Hash>,
    /// The checkpoint note.
    pub note: Vec<u8>,
}

/// Parses an `add-checkpoint` request body; `None` when it is not one.
pub fn parse_add_checkpoint(body: &[u8]) -> Option<AddCheckpoint> {
    // The first blank line ends the proof: the note's own blank line comes after its text.
    let split = body.windows(2).position(|w| w == b"\n\n")?;
    let head = std::str::from_utf8(&body[..split]).ok()?;
    let note = body[split + 2..].to_vec();
    let mut lines = head.split('\n');
    let old = lines.next()?.strip_prefix("old ")?;
    let old_size: u64 = old.parse().ok()?;
    if old_size.to_string() != old {
        return None;
    }
    let mut proof = Vec::new();
    for line in lines {
        let h: Hash = B64.decode(line).ok()?.try_into().ok()?;
        proof.push(h);
    }
    if proof.len() > MAX_PROOF_LINES {
        return None;
    }
    Some(AddCheckpoint {
        old_size,
        proof,
        note,
    })
}

/// The cosignatures by `cosigner` in a witness's `add-checkpoint` reply to `note`: the
/// reply's signature lines are appended to the note and checked like any note, lines of
/// other keys ignored. An empty list when the reply holds none by this cosigner.
pub fn cosignatures_in_reply(
    cosigner: &Cosigner,
    note: &str,
    log_public_key: &[u8; 32],
    reply: &[u8],
) -> std::result::Result<Vec<Cosigned>, NoteProblem> {
    let reply = std::str::from_utf8(reply)
        .map_err(|_| NoteProblem::Malformed("the reply is not UTF-8".into()))?;
    let mut joined = note.to_owned();
    for line in reply.lines().filter(|l| !l.trim().is_empty()) {
        joined.push_str(line);
        joined.push('\n');
    }
    let opened = open_note(
        joined.as_bytes(),
        log_public_key,
        std::slice::from_ref(cosigner),
    )?;
    Ok(opened.cosigned)
}

/// A cosignature as the store keeps it (table `audit_cosignatures`, key: tree size as u64
/// big-endian ‖ the first 8 bytes of SHA-256(origin ‖ "\n" ‖ witness vkey)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredCosignature {
    /// The origin the cosigned note named.
    pub origin: String,
    /// The witness's vkey.
    pub witness: String,
    /// The signature line.
    pub line: String,
}

impl StoredCosignature {
    /// The row key for a cosignature of the checkpoint at `size`.
    pub fn key(&self, size: u64) -> Vec<u8> {
        let mut h = ring::digest::Context::new(&ring::digest::SHA256);
        h.update(self.origin.as_bytes());
        h.update(b"\n");
        h.update(self.witness.as_bytes());
        let digest = h.finish();
        let mut key = size.to_be_bytes().to_vec();
        key.extend_from_slice(&digest.as_ref()[..8]);
        key
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{Key256, RootKey};
    use ring::signature::{Ed25519KeyPair, KeyPair};

    fn log_key() -> SigningKey {
        let root = RootKey::from_key(Key256::from_bytes(&[3; 32]));
        SigningKey::generate(&root).unwrap().0
    }

    fn witness(name: &str) -> (Ed25519KeyPair, Cosigner) {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let public: [u8; 32] = pair.public_key().as_ref().try_into().unwrap();
        (pair, Cosigner::new(name, public).unwrap())
    }

    fn cosign(pair: &Ed25519KeyPair, c: &Cosigner, note: &str, timestamp: u64) -> String {
        let body = note.split_once("\n\n").unwrap().0.to_owned() + "\n";
        let sig = pair.sign(&Cosigner::message(timestamp, body.as_bytes()));
        let mut bytes = timestamp.to_be_bytes().to_vec();
        bytes.extend_from_slice(sig.as_ref());
        signature_line(c.name(), c.key_id(), &bytes)
    }

    #[test]
    fn the_note_is_the_c2sp_checkpoint_signed_by_the_log_key() {
        let key = log_key();
        let root = [7u8; 32];
        let note = sign_note(&key, "vault.example/log", 42, &root).unwrap();
        let (body, sig) = note.split_once("\n\n").unwrap();
        assert_eq!(
            format!("{body}\n"),
            format!("vault.example/log\n42\n{}\n", B64.encode(root))
        );
        assert!(sig.starts_with("— vault.example/log "));
        // The vkey is what signed_note's own parser accepts, with the same key id.
        let vkey = log_vkey("vault.example/log", &key.public_key());
        let v = StandardVerifier::new(&vkey).unwrap();
        assert_eq!(
            v.key_id(),
            log_key_id("vault.example/log", &key.public_key())
        );
        let opened = open_note(note.as_bytes(), &key.public_key(), &[]).unwrap();
        assert_eq!((opened.size, opened.root), (42, root));
        assert!(opened.cosigned.is_empty());
        // Another key, or an edited size, is refused.
        let other = log_key();
        assert_eq!(
            open_note(note.as_bytes(), &other.public_key(), &[]),
            Err(NoteProblem::BadLogSignature)
        );
        let edited = note.replacen("\n42\n", "\n43\n", 1);
        assert_eq!(
            open_note(edited.as_bytes(), &key.public_key(), &[]),
            Err(NoteProblem::BadLogSignature)
        );
    }

    #[test]
    fn cosignatures_verify_and_bind_the_checkpoint() {
        let key = log_key();
        let note = sign_note(&key, "o.example", 5, &[1; 32]).unwrap();
        let (pair, w) = witness("witness.example/w1");
        let (_, stranger) = witness("witness.example/w2");
        assert_eq!(Cosigner::from_vkey(&w.vkey()).unwrap(), w);
        let line = cosign(&pair, &w, &note, 1_700_000_000);
        let got = cosignatures_in_reply(&w, &note, &key.public_key(), line.as_bytes()).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(
            (got[0].timestamp, got[0].line.as_str()),
            (1_700_000_000, line.as_str())
        );
        // Lines of other keys are ignored.
        let got =
            cosignatures_in_reply(&stranger, &note, &key.public_key(), line.as_bytes()).unwrap();
        assert!(got.is_empty());
        // A cosignature moved to another checkpoint does not verify.
        let other = sign_note(&key, "o.example", 5, &[2; 32]).unwrap();
        assert_eq!(
            cosignatures_in_reply(&w, &other, &key.public_key(), line.as_bytes()),
            Err(NoteProblem::BadCosignature("witness.example/w1".into()))
        );
    }

    #[test]
    fn vkeys_and_origins_are_checked() {
        let (_, w) = witness("w.example");
        let vkey = w.vkey();
        let flipped = vkey.replacen('+', "+0", 1);
        assert!(Cosigner::from_vkey(&flipped).is_err());
        let key = log_key();
        assert!(Cosigner::from_vkey(&log_vkey("o", &key.public_key())).is_err());
        assert!(Cosigner::from_vkey("a+b+c").is_err());
        assert!(check_origin("vault.example.fr/audit").is_ok());
        for bad in ["", "a b", "a+b", "a\u{1}b", &"x".repeat(256)] {
            assert!(check_origin(bad).is_err(), "{bad:?}");
        }
        let origin = default_origin(&key.public_key());
        assert!(origin.starts_with("vault.local/") && origin.len() == 28);
        assert!(check_origin(&origin).is_ok());
    }

    #[test]
    fn add_checkpoint_requests_round_trip() {
        let key = log_key();
        let note = sign_note(&key, "o", 9, &[4; 32]).unwrap();
        for proof in [vec![], vec![[1u8; 32], [2u8; 32]]] {
            let body = add_checkpoint_request(3, &proof, &note);
            let parsed = parse_add_checkpoint(body.as_bytes()).unwrap();
            assert_eq!(
                parsed,
                AddCheckpoint {
                    old_size: 3,
                    proof,
                    note: note.clone().into_bytes()
                }
            );
        }
        assert!(parse_add_checkpoint(b"old 03\n\nx").is_none());
        assert!(parse_add_checkpoint(b"new 3\n\nx").is_none());
    }
}
