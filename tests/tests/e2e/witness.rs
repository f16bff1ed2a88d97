//! Witnesses (c2sp.org/tlog-witness): the daemon submits its durable access-log
//! checkpoints to the witnesses of its configuration, keeps their cosignatures, and the
//! exported log carries them; `vaultctl audit verify --require-witnesses K` then proves that
//! witnesses saw the log the file holds. A log forked behind the vault's back (same key,
//! same origin, another root at a size a witness saw) gets no cosignature, and its export
//! fails that check while the honest one passes.
//!
//! The witness is written here: a small HTTP/1.1 server on 127.0.0.1:0 with its own Ed25519
//! cosigning key. It verifies the log's signature on the note, checks the consistency proof
//! from the size it last cosigned for the origin, answers 409 with its size when the client
//! is wrong about it, 422 when the proof does not verify (a fork), never cosigns two roots
//! for one size, and keeps everything in memory.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use base64::Engine as _;
use ring::signature::{Ed25519KeyPair, KeyPair};
use vault_core::audit::merkle::{Hash, empty_root, verify_consistency};
use vault_core::audit::witness::{
    Cosigner, NoteProblem, open_note, parse_add_checkpoint, signature_line,
};

use vault_tests::{Daemon, TestStore, VAULTCTL, ctl, use_store};

/// What the witness did, for the tests to wait on and check.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Event {
    Cosigned {
        origin: String,
        size: u64,
    },
    Refused {
        origin: String,
        size: u64,
        status: u16,
    },
}

#[derive(Default)]
struct State {
    /// The logs it witnesses: origin -> Ed25519 public key.
    logs: HashMap<String, [u8; 32]>,
    /// The latest checkpoint it cosigned, per origin.
    latest: HashMap<String, (u64, Hash)>,
    events: Vec<Event>,
    /// Answers 503 to everything (out of service).
    down: bool,
}

struct Witness {
    pair: Ed25519KeyPair,
    cosigner: Cosigner,
    state: Mutex<State>,
    changed: Condvar,
}

/// A running test witness.
struct TestWitness {
    inner: Arc<Witness>,
    url: String,
}

impl TestWitness {
    fn start(name: &str) -> TestWitness {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let public: [u8; 32] = pair.public_key().as_ref().try_into().unwrap();
        let inner = Arc::new(Witness {
            pair,
            cosigner: Cosigner::new(name, public).unwrap(),
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
        });
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let serving = Arc::clone(&inner);
        // One connection at a time: checking the old size and recording the new checkpoint
        // are then one atomic step, as the protocol requires.
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let _ = serving.serve(stream);
            }
        });
        TestWitness { inner, url }
    }

    fn vkey(&self) -> String {
        self.inner.cosigner.vkey()
    }

    /// Witnesses the log whose vkey (`<origin>+<id>+<base64(0x01 ‖ key)>`) is `vkey`.
    fn trust(&self, vkey: &str) {
        let mut parts = vkey.trim().splitn(3, '+');
        let origin = parts.next().unwrap().to_owned();
        let _id = parts.next().unwrap();
        let key = base64::engine::general_purpose::STANDARD
            .decode(parts.next().unwrap())
            .unwrap();
        assert_eq!(key[0], 0x01, "an Ed25519 log key");
        let key: [u8; 32] = key[1..].try_into().unwrap();
        self.inner.state.lock().unwrap().logs.insert(origin, key);
    }

    fn set_down(&self, down: bool) {
        self.inner.state.lock().unwrap().down = down;
    }

    fn latest(&self, origin: &str) -> Option<(u64, Hash)> {
        self.inner.state.lock().unwrap().latest.get(origin).copied()
    }

    /// Waits until `done` holds of the events (a test that fails here hangs no longer than
    /// the guard: two minutes).
    fn wait_for(&self, what: &str, done: impl Fn(&[Event]) -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        let mut state = self.inner.state.lock().unwrap();
        while !done(&state.events) {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            assert!(
                !left.is_zero(),
                "the witness never saw {what}: {:?}",
                state.events
            );
            state = self.inner.changed.wait_timeout(state, left).unwrap().0;
        }
    }
}

impl Witness {
    fn serve(&self, mut stream: TcpStream) -> std::io::Result<()> {
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let n = stream.read(&mut chunk)?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        let length: usize = head
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse().ok())?
            })
            .unwrap_or(0);
        while buf.len() < head_end + length {
            let n = stream.read(&mut chunk)?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let body = &buf[head_end..buf.len().min(head_end + length)];
        let request_line = head.lines().next().unwrap_or_default();
        let (status, content_type, reply) =
            if request_line.starts_with("POST ") && request_line.contains("/add-checkpoint ") {
                self.add_checkpoint(body)
            } else {
                (404, "text/plain", b"not found\n".to_vec())
            };
        write!(
            stream,
            "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n",
            reason(status),
            reply.len()
        )?;
        stream.write_all(&reply)?;
        stream.flush()
    }

    fn add_checkpoint(&self, body: &[u8]) -> (u16, &'static str, Vec<u8>) {
        let plain =
            |status: u16, text: &str| (status, "text/plain", format!("{text}\n").into_bytes());
        let Some(request) = parse_add_checkpoint(body) else {
            return plain(400, "not an add-checkpoint request");
        };
        let note = String::from_utf8_lossy(&request.note).to_string();
        let origin = note.split('\n').next().unwrap_or_default().to_owned();
        let mut state = self.state.lock().unwrap();
        let Some(key) = state.logs.get(&origin).copied() else {
            return plain(404, "unknown log");
        };
        let opened = match open_note(&request.note, &key, &[]) {
            Ok(o) => o,
            Err(NoteProblem::BadLogSignature) => return plain(403, "no valid log signature"),
            Err(e) => return plain(400, &e.to_string()),
        };
        if let Err((status, content_type, reply)) = check(&state, &origin, &request, &opened) {
            state.events.push(Event::Refused {
                origin: origin.clone(),
                size: opened.size,
                status,
            });
            self.changed.notify_all();
            return (status, content_type, reply);
        }
        state
            .latest
            .insert(origin.clone(), (opened.size, opened.root));
        state.events.push(Event::Cosigned {
            origin,
            size: opened.size,
        });
        self.changed.notify_all();
        let text = note
            .split_once("\n\n")
            .map(|(t, _)| format!("{t}\n"))
            .unwrap_or_default();
        let timestamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let sig = self
            .pair
            .sign(&Cosigner::message(timestamp, text.as_bytes()));
        let mut bytes = timestamp.to_be_bytes().to_vec();
        bytes.extend_from_slice(sig.as_ref());
        let line = signature_line(self.cosigner.name(), self.cosigner.key_id(), &bytes);
        (200, "text/plain; charset=utf-8", line.into_bytes())
    }
}

type Refusal = (u16, &'static str, Vec<u8>);

/// Whether the witness may cosign `opened` submitted with `request`, per c2sp.org/tlog-witness.
fn check(
    state: &State,
    origin: &str,
    request: &vault_core::audit::witness::AddCheckpoint,
    opened: &vault_core::audit::witness::OpenedNote,
) -> Result<(), Refusal> {
    let plain = |status: u16, text: &str| (status, "text/plain", format!("{text}\n").into_bytes());
    if state.down {
        return Err(plain(503, "out of service"));
    }
    if request.old_size > opened.size {
        return Err(plain(400, "old size above the checkpoint's"));
    }
    let (size, root) = state
        .latest
        .get(origin)
        .copied()
        .unwrap_or((0, empty_root()));
    let conflict = (409, "text/x.tlog.size", format!("{size}\n").into_bytes());
    if request.old_size != size {
        return Err(conflict);
    }
    if opened.size == size {
        // Never two roots for one size.
        if size > 0 && opened.root != root {
            return Err(conflict);
        }
    } else if size == 0 {
        if !request.proof.is_empty() {
            return Err(plain(400, "a proof from size 0"));
        }
    } else if verify_consistency(size, opened.size, &root, &opened.root, &request.proof).is_err() {
        return Err(plain(422, "the consistency proof does not verify"));
    }
    Ok(())
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        409 => "Conflict",
        422 => "Unprocessable Entity",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

/// `vaultctl` against `daemon`, as the auditor whose token is in `<data dir>/auditor.token`
/// (the bootstrap admin when there is none yet).
fn vaultctl(daemon: &Daemon, args: &[&str]) -> Output {
    let auditor = std::fs::read_to_string(daemon.data_dir.join(AUDITOR_TOKEN)).ok();
    ctl::vaultctl(daemon, auditor.as_deref().map(str::trim), args)
}

/// Where the tests keep the auditor's token, in the data directory (so a copy of it has
/// the token of the same store).
const AUDITOR_TOKEN: &str = "auditor.token";

fn ok(out: Output) -> String {
    ctl::ok(&out).trim().to_owned()
}

/// The offline verifier, no daemon: `Ok(report)` or `Err(its one-line reason)`.
fn verify(file: &Path, key: &Path, extra: &[&str]) -> Result<serde_json::Value, String> {
    let out = Command::new(&*VAULTCTL)
        .args(["audit", "verify"])
        .arg(file)
        .arg("--public-key")
        .arg(key)
        .args(extra)
        .output()
        .unwrap();
    if out.status.success() {
        Ok(serde_json::from_slice(&out.stdout).unwrap())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).to_string())
    }
}

/// The signed end (size, root hex) of an exported file.
fn end_of(file: &Path) -> (u64, String) {
    let text = std::fs::read_to_string(file).unwrap();
    let header: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    (
        header["end"]["size"].as_u64().unwrap(),
        header["end"]["root"].as_str().unwrap().to_owned(),
    )
}

/// Exports the log up to the newest checkpoint with `min` cosignatures, retrying until the
/// daemon has kept them (the witness answers before the daemon stores its reply).
fn export_witnessed(daemon: &Daemon, out: &Path, min: u32, at_least: u64) -> (u64, String) {
    let min = min.to_string();
    for _ in 0..600 {
        let o = vaultctl(
            daemon,
            &[
                "audit",
                "export",
                "--out",
                out.to_str().unwrap(),
                "--min-cosignatures",
                &min,
            ],
        );
        if o.status.success() && end_of(out).0 >= at_least {
            return end_of(out);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("no export witnessed by {min} up to size {at_least} came");
}

/// The log's vkey, with its public key written to `<keys>/log.pub`, from a first start that
/// also creates the auditor.
fn log_keys(dir: &Path, keys: &Path) -> (String, PathBuf) {
    let mut daemon = Daemon::start(dir);
    let created: serde_json::Value = serde_json::from_str(&ok(vaultctl(
        &daemon,
        &["client", "create", "--name", "auditor", "--role", "auditor"],
    )))
    .unwrap();
    let token = created["token"].as_str().unwrap();
    vault_tests::leaks::watch_secret(token);
    std::fs::write(dir.join(AUDITOR_TOKEN), token).unwrap();
    let vkey = ok(vaultctl(&daemon, &["audit", "public-key", "--vkey"]));
    let hex = ok(vaultctl(&daemon, &["audit", "public-key"]));
    daemon.terminate();
    let key = keys.join("log.pub");
    std::fs::write(&key, hex).unwrap();
    (vkey, key)
}

fn config(dir: &Path, witnesses: &[&TestWitness]) -> PathBuf {
    let mut toml = String::new();
    for w in witnesses {
        toml.push_str(&format!(
            "[[audit_witnesses]]\nurl = \"{}\"\nvkey = \"{}\"\n",
            w.url,
            w.vkey()
        ));
    }
    let path = dir.join("vault.toml");
    std::fs::write(&path, toml).unwrap();
    path
}

fn start_witnessed(dir: &Path, config: &Path) -> Daemon {
    Daemon::start_with(dir, &["--config", config.to_str().unwrap()])
}

/// Calls that each add an entry to the access log.
fn activity(daemon: &Daemon, calls: usize) {
    for _ in 0..calls {
        ok(vaultctl(daemon, &["audit", "checkpoints"]));
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn an_honest_log_is_cosigned_and_its_export_verifies_with_required_witnesses() {
    let dir = tempfile::tempdir().unwrap();
    let keys = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (log_vkey, log_key) = log_keys(&data, keys.path());
    let origin = log_vkey.split('+').next().unwrap().to_owned();
    assert!(origin.starts_with("vault.local/"), "{log_vkey}");
    let (w1, w2) = (TestWitness::start("w1.test"), TestWitness::start("w2.test"));
    let stranger = TestWitness::start("w3.test");
    w1.trust(&log_vkey);
    w2.trust(&log_vkey);
    let mut daemon = start_witnessed(&data, &config(keys.path(), &[&w1, &w2]));
    activity(&daemon, 3);

    // The checkpoint the daemon made durable at its last stop is cosigned by both.
    let file = keys.path().join("witnessed.jsonl");
    let (size, root) = export_witnessed(&daemon, &file, 2, 1);
    assert_eq!(w1.latest(&origin).map(|(s, _)| s >= size), Some(true));
    let witnesses = ["--witness", &w1.vkey(), "--witness", &w2.vkey()];
    let report = verify(
        &file,
        &log_key,
        &[&witnesses[..], &["--require-witnesses", "2"]].concat(),
    )
    .unwrap();
    assert_eq!(report["tree_size"], size);
    assert_eq!(report["root"], root);
    assert_eq!(
        report["witnessed_by"],
        serde_json::json!(["w1.test", "w2.test"])
    );
    // Without --require-witnesses, the file verifies as any export does.
    assert_eq!(verify(&file, &log_key, &[]).unwrap()["tree_size"], size);
    // A key given that did not cosign does not count; one more required than cosigned fails.
    let e = verify(
        &file,
        &log_key,
        &[
            "--witness",
            &w1.vkey(),
            "--witness",
            &stranger.vkey(),
            "--require-witnesses",
            "2",
        ],
    )
    .unwrap_err();
    assert!(
        e.contains("not witnessed") && e.contains("1 of the 2 given"),
        "{e}"
    );

    // A plain export ends at a checkpoint made for it. With w1 out of service it stays
    // without w1's cosignature, so a verifier that requires w1 refuses the file, and says
    // how to get one that is witnessed.
    w1.set_down(true);
    let plain = keys.path().join("plain.jsonl");
    ok(vaultctl(
        &daemon,
        &["audit", "export", "--out", plain.to_str().unwrap()],
    ));
    let (plain_size, _) = end_of(&plain);
    assert!(plain_size > size);
    let e = verify(
        &plain,
        &log_key,
        &["--witness", &w1.vkey(), "--require-witnesses", "1"],
    )
    .unwrap_err();
    assert!(
        e.contains("not witnessed") && e.contains("--min-cosignatures"),
        "{e}"
    );
    // Back in service, w1 gets the checkpoint in turn: the daemon retries.
    w1.wait_for("a submission while out of service", |events| {
        events
            .iter()
            .any(|e| matches!(e, Event::Refused { status: 503, .. }))
    });
    w1.set_down(false);
    let (later, _) = export_witnessed(&daemon, &file, 2, plain_size);
    assert!(later >= plain_size);
    assert!(
        verify(
            &file,
            &log_key,
            &[&witnesses[..], &["--require-witnesses", "2"]].concat()
        )
        .is_ok()
    );
    daemon.terminate();
}

#[test]
fn a_forked_log_is_refused_by_the_witness_and_by_the_verifier() {
    let dir = tempfile::tempdir().unwrap();
    let keys = tempfile::tempdir().unwrap();
    let (honest_dir, fork_dir) = (dir.path().join("honest"), dir.path().join("fork"));
    // The fork is a copy of the embedded store's directory, whatever the suite's backend.
    use_store(&honest_dir, TestStore::Embedded);
    use_store(&fork_dir, TestStore::Embedded);
    let (log_vkey, log_key) = log_keys(&honest_dir, keys.path());
    let origin = log_vkey.split('+').next().unwrap().to_owned();
    let witness = TestWitness::start("w.test");
    witness.trust(&log_vkey);
    let config = config(keys.path(), &[&witness]);

    // The vault runs, its checkpoints cosigned, and stops.
    let mut daemon = start_witnessed(&honest_dir, &config);
    activity(&daemon, 2);
    export_witnessed(&daemon, &keys.path().join("first.jsonl"), 1, 1);
    daemon.terminate();
    // Someone with the store keeps a copy of it as it is now...
    copy_dir(&honest_dir, &fork_dir);

    // ...while the vault goes on, and the witness cosigns its later checkpoints.
    let mut daemon = start_witnessed(&honest_dir, &config);
    activity(&daemon, 4);
    let plain = keys.path().join("plain.jsonl");
    ok(vaultctl(
        &daemon,
        &["audit", "export", "--out", plain.to_str().unwrap()],
    ));
    let (seen, _) = end_of(&plain);
    let honest = keys.path().join("honest.jsonl");
    let (honest_size, honest_root) = export_witnessed(&daemon, &honest, 1, seen);
    daemon.terminate();
    let require = ["--witness", &witness.vkey(), "--require-witnesses", "1"];
    assert!(verify(&honest, &log_key, &require).is_ok());
    // The witness holds the honest log (up to the checkpoint made for that export, or the
    // one at the stop, which the daemon submitted in turn).
    let before_fork = witness.latest(&origin).unwrap();
    assert!(before_fork.0 >= honest_size);

    // The copy is started with the same key and origin and other calls: its log forks at
    // the size of the copy and reaches sizes the witness saw, with other roots.
    let mut fork = start_witnessed(&fork_dir, &config);
    let forked = keys.path().join("forked.jsonl");
    loop {
        activity(&fork, 3);
        ok(vaultctl(
            &fork,
            &["audit", "export", "--out", forked.to_str().unwrap()],
        ));
        if end_of(&forked).0 > before_fork.0 {
            break;
        }
    }
    let (forked_size, forked_root) = end_of(&forked);
    // The witness refuses it: the proof from the size it cosigned does not verify.
    witness.wait_for("the forked checkpoint", |events| {
        events.iter().any(|e| {
            matches!(e, Event::Refused { origin: o, size, status: 422 }
                if *o == origin && *size >= forked_size)
        })
    });
    assert_eq!(
        witness.latest(&origin),
        Some(before_fork),
        "nothing of the fork cosigned"
    );
    assert_ne!(forked_root, honest_root);

    // The forked file is internally consistent: without witnesses it verifies, as before.
    assert_eq!(
        verify(&forked, &log_key, &[]).unwrap()["tree_size"],
        forked_size
    );
    // Requiring a witness, it is refused.
    let e = verify(&forked, &log_key, &require).unwrap_err();
    assert!(e.contains("not witnessed"), "{e}");
    // The most the fork can show witnessed is the prefix it copied, from before the fork.
    let prefix = keys.path().join("prefix.jsonl");
    let (prefix_size, _) = export_witnessed(&fork, &prefix, 1, 1);
    assert!(prefix_size < honest_size, "{prefix_size} < {honest_size}");
    fork.terminate();
    // And the honest export still verifies.
    assert!(verify(&honest, &log_key, &require).is_ok());
}
