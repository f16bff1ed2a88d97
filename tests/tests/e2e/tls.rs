//! TLS and mutual TLS from files, end to end: a registered client certificate identifies
//! a client without a token; unknown or revoked certificates and plaintext are refused.

use rcgen::ExtendedKeyUsagePurpose;
use tonic::Code;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use vault_proto::v1 as pb;
use vault_proto::v1::admin_client::AdminClient;
use vault_proto::v1::supporters_client::SupportersClient;
use vault_server::client::CallMetadata;
use vault_tests::pki::{ca, leaf};
use vault_tests::{Daemon, authed, write};

async fn tls_channel(
    daemon: &Daemon,
    ca_pem: &str,
    identity: Option<(&str, &str)>,
) -> Result<Channel, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca_pem))
        .domain_name("localhost");
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    Channel::from_shared(format!("https://localhost:{}", daemon.addr.port()))
        .unwrap()
        .tls_config(tls)?
        .connect()
        .await
}

fn fingerprint(der: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, der))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_identifies_registered_clients() {
    let dir = tempfile::tempdir().unwrap();
    let pki = tempfile::tempdir().unwrap();
    let server_ca = ca("vault test server CA");
    let client_ca = ca("vault test client CA");
    let rogue_ca = ca("someone else's CA");
    let (server_cert, server_key, _) = leaf(
        &server_ca,
        &["localhost", "127.0.0.1"],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let (mailer_cert, mailer_key, mailer_der) =
        leaf(&client_ca, &["mailer"], ExtendedKeyUsagePurpose::ClientAuth);
    let (stranger_cert, stranger_key, _) = leaf(
        &client_ca,
        &["stranger"],
        ExtendedKeyUsagePurpose::ClientAuth,
    );
    let (rogue_cert, rogue_key, _) =
        leaf(&rogue_ca, &["rogue"], ExtendedKeyUsagePurpose::ClientAuth);
    let server_ca_pem = server_ca.cert.pem();
    let config = format!(
        "[tls]\ncert_file = {:?}\nkey_file = {:?}\nclient_ca_file = {:?}\n",
        write(pki.path(), "server.crt", &server_cert),
        write(pki.path(), "server.key", &server_key),
        write(pki.path(), "clients-ca.crt", &client_ca.cert.pem()),
    );
    let config_path = write(pki.path(), "vault.toml", &config);
    let daemon = Daemon::start_with(dir.path(), &["--config", &config_path]);
    assert!(daemon.logs().contains("TLS enabled (mutual TLS)"));

    // Plaintext is refused.
    let plain = daemon.channel().await;
    let err = AdminClient::new(plain)
        .list_clients(authed(pb::ListClientsRequest {}, &daemon.admin_token()))
        .await
        .unwrap_err();
    assert_ne!(err.code(), Code::Ok);

    // TLS without a client certificate: the bearer token authenticates.
    let no_cert = tls_channel(&daemon, &server_ca_pem, None).await.unwrap();
    let mut admin = AdminClient::new(no_cert.clone());
    // A campaign tool takes two admins: the bootstrap admin proposes, a second approves.
    let approver = admin
        .create_client(authed(
            pb::CreateClientRequest {
                name: "approver".into(),
                role: "admin".into(),
                ..Default::default()
            },
            &daemon.admin_token(),
        ))
        .await
        .unwrap()
        .into_inner()
        .token;
    vault_tests::leaks::watch_secret(&approver);
    let proposed = admin
        .propose_change(authed(
            pb::ProposeChangeRequest {
                change: Some(pb::propose_change_request::Change::CreateClient(
                    pb::CreateClientRequest {
                        name: "mailer".into(),
                        role: "campaign-tool".into(),
                        purposes: vec!["membership".into()],
                        cert_sha256: fingerprint(&mailer_der),
                        expires_at: None,
                    },
                )),
            },
            &daemon.admin_token(),
        ))
        .await
        .unwrap()
        .into_inner();
    vault_tests::leaks::watch_secret(&proposed.token);
    let approved = admin
        .approve_proposal(authed(
            pb::ApproveProposalRequest {
                id: proposed.proposal.unwrap().id,
                change_sha256: String::new(),
            },
            &approver,
        ))
        .await
        .unwrap()
        .into_inner();
    let Some(pb::proposal::Change::CreateClient(mailer)) = approved.change else {
        panic!("a client proposal: {approved:?}")
    };
    // Without either, the call is refused.
    let err = SupportersClient::new(no_cert)
        .get(tonic::Request::new(pb::GetRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);

    // The registered certificate alone identifies the mailer: its calls carry a purpose
    // and no token.
    let membership = CallMetadata::new(None).with_purpose(Some("membership"));
    let with_cert = tls_channel(&daemon, &server_ca_pem, Some((&mailer_cert, &mailer_key)))
        .await
        .unwrap();
    let mut s = SupportersClient::new(with_cert);
    let req = authed(
        pb::UpsertRequest {
            supporter: Some(vault_tests::supporter(
                "Simone",
                "Veil",
                "simone@veil.fr",
                "",
            )),
            consents: vec![],
        },
        &membership,
    );
    let id = s.upsert(req).await.unwrap().into_inner().id;
    assert!(!id.is_empty());
    // The access log names the mailer as the actor.
    let auditor = admin
        .create_client(authed(
            pb::CreateClientRequest {
                name: "auditor".into(),
                role: "auditor".into(),
                ..Default::default()
            },
            &daemon.admin_token(),
        ))
        .await
        .unwrap()
        .into_inner()
        .token;
    let tls_for_audit = tls_channel(&daemon, &server_ca_pem, None).await.unwrap();
    let mut entries = vault_proto::v1::audit_client::AuditClient::new(tls_for_audit)
        .query(authed(
            pb::QueryRequest {
                actor: mailer.id.clone(),
                action: "Supporters.Upsert".into(),
                ..Default::default()
            },
            &auditor,
        ))
        .await
        .unwrap()
        .into_inner();
    let first = entries
        .message()
        .await
        .unwrap()
        .expect("an entry for the mailer's upsert");
    assert_eq!(
        (first.outcome.as_str(), first.subject_ids.clone()),
        ("allowed", vec![id.clone()])
    );

    // A certificate from the right CA that no client registered: refused.
    let stranger = tls_channel(
        &daemon,
        &server_ca_pem,
        Some((&stranger_cert, &stranger_key)),
    )
    .await
    .unwrap();
    let req = authed(
        pb::GetRequest {
            id: id.clone(),
            fields: None,
        },
        &membership,
    );
    let err = SupportersClient::new(stranger).get(req).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);

    // A certificate from another CA: the TLS handshake itself fails.
    let rogue = match tls_channel(&daemon, &server_ca_pem, Some((&rogue_cert, &rogue_key))).await {
        Err(_) => None,
        Ok(ch) => Some(
            SupportersClient::new(ch)
                .get(tonic::Request::new(pb::GetRequest::default()))
                .await
                .unwrap_err(),
        ),
    };
    if let Some(err) = rogue {
        assert_ne!(err.code(), Code::Ok);
        assert_ne!(
            err.code(),
            Code::InvalidArgument,
            "a rogue certificate reached the service"
        );
    }

    // vaultctl speaks TLS and mutual TLS, with a bare HOST:PORT address.
    let ca_file = write(pki.path(), "server-ca.crt", &server_ca_pem);
    let mailer_cert_file = write(pki.path(), "mailer.crt", &mailer_cert);
    let mailer_key_file = write(pki.path(), "mailer.key", &mailer_key);
    let addr = format!("localhost:{}", daemon.addr.port());
    let ctl = |token: Option<&str>, args: &[&str]| {
        let mut cmd = std::process::Command::new(&*vault_tests::VAULTCTL);
        cmd.args(["--addr", &addr, "--ca-cert", &ca_file])
            .args(args)
            .env("VAULT_DATA_DIR", pki.path())
            .env_remove("VAULT_TOKEN")
            .env_remove("VAULT_ADDR")
            .env_remove("VAULT_PURPOSE");
        if let Some(t) = token {
            cmd.env("VAULT_TOKEN", t);
        }
        let out = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        vault_tests::leaks::assert_clean("vaultctl over TLS", &stderr);
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr,
        )
    };
    // TLS with the admin token: register a client.
    let (ok, out, err) = ctl(
        Some(&daemon.admin_token()),
        &[
            "client",
            "create",
            "--name",
            "ctl-auditor",
            "--role",
            "auditor",
        ],
    );
    assert!(ok, "{err}");
    let created: serde_json::Value = serde_json::from_str(&out).unwrap();
    let ctl_auditor = created["token"].as_str().unwrap().to_owned();
    vault_tests::leaks::watch_secret(&ctl_auditor);
    // Mutual TLS, the certificate alone: the mailer upserts.
    let (ok, out, err) = ctl(
        None,
        &[
            "--cert",
            &mailer_cert_file,
            "--key",
            &mailer_key_file,
            "--purpose",
            "membership",
            "supporter",
            "upsert",
            "--email",
            "lucie.aubrac@example.fr",
        ],
    );
    assert!(ok, "{err}");
    let upserted: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(upserted["created"], true, "{out}");
    // The auditor exports the log over TLS; it verifies offline.
    let log_file = pki.path().join("log.jsonl");
    let key_file = pki.path().join("log.pub");
    let (ok, _, err) = ctl(
        Some(&ctl_auditor),
        &["audit", "export", "--out", log_file.to_str().unwrap()],
    );
    assert!(ok, "{err}");
    let (ok, out, err) = ctl(Some(&ctl_auditor), &["audit", "public-key"]);
    assert!(ok, "{err}");
    std::fs::write(&key_file, out.trim()).unwrap();
    let (ok, out, err) = ctl(
        None,
        &[
            "audit",
            "verify",
            log_file.to_str().unwrap(),
            "--public-key",
            key_file.to_str().unwrap(),
        ],
    );
    assert!(ok, "{err}{out}");
    // Plaintext to a TLS daemon, and https without a CA: refused with what to do.
    let (ok, _, err) = std::process::Command::new(&*vault_tests::VAULTCTL)
        .args(["--addr", &format!("http://{addr}"), "client", "list"])
        .env("VAULT_TOKEN", daemon.admin_token())
        .output()
        .map(|o| {
            (
                o.status.success(),
                (),
                String::from_utf8_lossy(&o.stderr).into_owned(),
            )
        })
        .unwrap();
    assert!(!ok);
    assert!(
        err.contains("https://") && err.contains("--ca-cert"),
        "{err}"
    );
    let (ok, _, err) = std::process::Command::new(&*vault_tests::VAULTCTL)
        .args(["--addr", &format!("https://{addr}"), "client", "list"])
        .env("VAULT_TOKEN", daemon.admin_token())
        .env_remove("VAULT_CA_CERT")
        .output()
        .map(|o| {
            (
                o.status.success(),
                (),
                String::from_utf8_lossy(&o.stderr).into_owned(),
            )
        })
        .unwrap();
    assert!(!ok);
    assert!(err.contains("--ca-cert"), "{err}");

    // Revoking the client revokes its certificate on the next call.
    admin
        .revoke_client(authed(
            pb::RevokeClientRequest {
                id: mailer.id.clone(),
            },
            &daemon.admin_token(),
        ))
        .await
        .unwrap();
    let req = authed(pb::GetRequest { id, fields: None }, &membership);
    assert_eq!(s.get(req).await.unwrap_err().code(), Code::Unauthenticated);
}

#[tokio::test]
async fn tls_allows_listening_beyond_loopback() {
    // With TLS configured the daemon accepts a non-loopback address (checked at config
    // level: binding 0.0.0.0 on port 0 stays local to this test machine).
    let dir = tempfile::tempdir().unwrap();
    let pki = tempfile::tempdir().unwrap();
    let server_ca = ca("vault test server CA");
    let (cert, key, _) = leaf(
        &server_ca,
        &["localhost"],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let config = format!(
        "listen = \"0.0.0.0:0\"\n[tls]\ncert_file = {:?}\nkey_file = {:?}\n",
        write(pki.path(), "s.crt", &cert),
        write(pki.path(), "s.key", &key)
    );
    let config_path = write(pki.path(), "vault.toml", &config);
    let child = std::process::Command::new(&*vault_tests::VAULT_SERVER)
        .args([
            "--config",
            &config_path,
            "--data-dir",
            dir.path().to_str().unwrap(),
            "--listen",
            "0.0.0.0:0",
        ])
        .env("VAULT_LOG", vault_tests::VAULT_LOG)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    // Stop it once it says it serves (a fixed sleep raced a slow start on a loaded machine:
    // SIGTERM before the handler is installed kills the daemon before it logs anything).
    let mut child = child;
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut err = String::new();
        for line in std::io::BufRead::lines(std::io::BufReader::new(stderr)) {
            let Ok(line) = line else { break };
            if line.contains("listening on ") {
                let _ = tx.send(());
            }
            err.push_str(&line);
            err.push('\n');
        }
        err
    });
    let served = rx.recv_timeout(std::time::Duration::from_secs(60)).is_ok();
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    child.wait().unwrap();
    let err = reader.join().unwrap();
    assert!(served, "{err}");
    assert!(err.contains("listening on 0.0.0.0:"), "{err}");
    assert!(!err.contains("refusing"), "{err}");
    vault_tests::leaks::assert_clean("the daemon on 0.0.0.0", &err);
}
