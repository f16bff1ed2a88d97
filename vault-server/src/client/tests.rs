//! Unit tests of the client library: output shapes, and the streaming calls against a mock
//! `Supporters` service.

use std::io::{self, Write};
use std::time::Duration;

use prost_types::Timestamp;
use vault_proto::v1 as pb;

use super::csv_import::{CsvRows, Progress, import};
use super::output::*;
use super::{CallMetadata, Session, Token};

#[test]
fn dates_parse_strictly() {
    let t = parse_date("2026-01-31").unwrap();
    assert_eq!(t.seconds, 1_769_817_600);
    assert_eq!(date(Some(&t)), "2026-01-31");
    assert_eq!(time(Some(&t)), "2026-01-31T00:00:00Z");
    for bad in [
        "2026-02-31",
        "2026-1-31",
        "31/01/2026",
        "",
        "2026-01-31T00:00:00Z",
    ] {
        assert!(parse_date(bad).is_err(), "{bad}");
    }
    assert_eq!(time(None), "-");
}

#[test]
fn readable_and_json_output() {
    let r = pb::ErasureReceipt {
        receipt_id: "r1".into(),
        subject_id: "s1".into(),
        erased_at: Some(Timestamp {
            seconds: 1_769_817_600,
            nanos: 5,
        }),
        request_ref: "LETTER-7".into(),
        client_id: "dpo".into(),
        suppressed: true,
    };
    let text = receipt(&r, false);
    assert!(text.contains("erased       s1"), "{text}");
    assert!(text.contains("at           2026-01-31T00:00:00Z"), "{text}");
    assert!(text.contains("suppressed   yes"), "{text}");
    let v: serde_json::Value = serde_json::from_str(&receipt(&r, true)).unwrap();
    assert_eq!(v["request_ref"], "LETTER-7");

    let t = pb::RightsRequest {
        id: "t1".into(),
        kind: "erasure".into(),
        received_at: Some(parse_date("2026-01-31").unwrap()),
        due_at: Some(parse_date("2026-02-28").unwrap()),
        status: "open".into(),
        overdue: true,
        ..Default::default()
    };
    let table = rights_requests(std::slice::from_ref(&t), false);
    let mut lines = table.lines();
    assert!(lines.next().unwrap().starts_with("ID  KIND"));
    let line = lines.next().unwrap();
    assert!(
        line.contains("2026-01-31  2026-02-28  open OVERDUE"),
        "{line}"
    );
    assert!(rights_request(&t, false).contains("due        2026-02-28 (OVERDUE)"));
    assert_eq!(rights_requests(&[], false), "no requests");
    let v: serde_json::Value = serde_json::from_str(&rights_requests(&[t], true)).unwrap();
    assert_eq!(v[0]["due_at"], "2026-02-28");

    let s = sweep(
        &pb::RetentionSweepResponse {
            dry_run: true,
            subject_ids: vec!["a".into(), "b".into()],
            examined: 10,
            kept_restricted: vec!["r".into()],
        },
        false,
    );
    assert_eq!(
        s,
        "dry run: examined 10 supporters, would erase 2\n  a\n  b\nkept 1 past retention \
         because processing is restricted (art. 18):\n  r"
    );
    let c = change(
        &pb::ChangeEvent {
            cursor: "c9".into(),
            subject_id: "s1".into(),
            kind: "consent-granted".into(),
            at: None,
            purpose: "newsletter".into(),
            channel: "email".into(),
        },
        false,
    );
    assert_eq!(c, "- consent-granted   s1 newsletter/email cursor=c9");
    let m = manifest(
        &pb::BackupManifest {
            path: "/b".into(),
            epochs: vec![1, 2],
            ..Default::default()
        },
        false,
    );
    assert!(m.contains("key epochs          1, 2"), "{m}");
    let k = rotation(&pb::RotateKeysResponse::default(), false);
    assert!(k.contains("epochs destroyed  -"), "{k}");
}

/// A Supporters service that implements only the streaming calls, as the client needs.
mod mock {
    use std::sync::{Arc, Mutex};

    use tonic::{Request, Response, Status};
    use vault_proto::v1 as pb;
    use vault_proto::v1::supporters_server::{Supporters, SupportersServer};

    type Feed = tokio::sync::mpsc::Sender<Result<pb::ChangeEvent, Status>>;

    #[derive(Default)]
    pub struct Mock {
        pub batches: Arc<Mutex<Vec<usize>>>,
        pub purposes: Arc<Mutex<Vec<String>>>,
        pub feeds: Arc<Mutex<Vec<Feed>>>,
    }

    fn no<T>() -> Result<T, Status> {
        Err(Status::unimplemented("mock"))
    }

    #[tonic::async_trait]
    impl Supporters for Mock {
        async fn upsert(
            &self,
            _: Request<pb::UpsertRequest>,
        ) -> Result<Response<pb::UpsertResponse>, Status> {
            no()
        }
        async fn get(&self, _: Request<pb::GetRequest>) -> Result<Response<pb::Supporter>, Status> {
            no()
        }
        async fn lookup(
            &self,
            _: Request<pb::LookupRequest>,
        ) -> Result<Response<pb::Supporter>, Status> {
            no()
        }
        async fn update(
            &self,
            _: Request<pb::UpdateRequest>,
        ) -> Result<Response<pb::Supporter>, Status> {
            no()
        }
        async fn tag(&self, _: Request<pb::TagRequest>) -> Result<Response<pb::Supporter>, Status> {
            no()
        }
        async fn untag(
            &self,
            _: Request<pb::UntagRequest>,
        ) -> Result<Response<pb::Supporter>, Status> {
            no()
        }

        type SearchStream = tokio_stream::Iter<std::vec::IntoIter<Result<pb::Supporter, Status>>>;

        async fn search(
            &self,
            request: Request<pb::SearchRequest>,
        ) -> Result<Response<Self::SearchStream>, Status> {
            let page = request.into_inner().page_token;
            let person = |id: &str| {
                Ok(pb::Supporter {
                    id: id.into(),
                    ..Default::default()
                })
            };
            let (items, next) = match page.as_str() {
                "" => (vec![person("a"), person("b")], Some("p2")),
                "p2" => (vec![person("c")], None),
                _ => return Err(Status::invalid_argument("bad page token")),
            };
            let mut reply = Response::new(tokio_stream::iter(items));
            if let Some(n) = next {
                reply.metadata_mut().insert(
                    vault_proto::metadata::NEXT_PAGE_TOKEN,
                    tonic::metadata::MetadataValue::from_static(n),
                );
            }
            Ok(reply)
        }

        async fn import(
            &self,
            request: Request<tonic::Streaming<pb::Supporter>>,
        ) -> Result<Response<pb::ImportResponse>, Status> {
            let purpose = request
                .metadata()
                .get(vault_proto::metadata::PURPOSE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            self.purposes.lock().unwrap().push(purpose);
            let mut stream = request.into_inner();
            let mut reply = pb::ImportResponse::default();
            let mut n = 0u64;
            while let Some(s) = stream.message().await? {
                n += 1;
                if s.email.starts_with("bad") {
                    reply.rejected.push(pb::RejectedRow {
                        row: n,
                        reason: "email: refused".into(),
                        code: "InvalidArgument".into(),
                        field: "email".into(),
                    });
                } else {
                    reply.created += 1;
                }
            }
            self.batches
                .lock()
                .unwrap()
                .push(usize::try_from(n).unwrap());
            Ok(Response::new(reply))
        }

        type WatchStream = tokio_stream::wrappers::ReceiverStream<Result<pb::ChangeEvent, Status>>;

        async fn watch(
            &self,
            _: Request<pb::WatchRequest>,
        ) -> Result<Response<Self::WatchStream>, Status> {
            let (tx, rx) = tokio::sync::mpsc::channel(8);
            for i in 1..=3 {
                let e = pb::ChangeEvent {
                    cursor: format!("c{i}"),
                    subject_id: format!("s{i}"),
                    kind: "created".into(),
                    ..Default::default()
                };
                tx.send(Ok(e)).await.unwrap();
            }
            // Kept open: the feed is live.
            self.feeds.lock().unwrap().push(tx);
            Ok(Response::new(tokio_stream::wrappers::ReceiverStream::new(
                rx,
            )))
        }
    }

    /// Serves `mock` on 127.0.0.1 and returns a channel to it.
    pub async fn serve(mock: Mock) -> tonic::transport::Channel {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(SupportersServer::new(mock))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        tonic::transport::Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap()
    }
}

/// A session over `channel` with the token `t`.
fn session(channel: tonic::transport::Channel) -> Session {
    Session::new(channel, CallMetadata::new(Token::new("t")))
}

#[tokio::test]
async fn import_streams_in_batches_and_reports_file_rows() {
    let mock = mock::Mock::default();
    let (batches, purposes) = (mock.batches.clone(), mock.purposes.clone());
    let channel = mock::serve(mock).await;
    let csv = "email,prenom\n\
               ok1@x.fr,A\n\
               bad2@x.fr,B\n\
               three,fields,here\n\
               ok4@x.fr,D\n\
               bad5@x.fr,E\n\
               ok6@x.fr,F\n";
    let rows = CsvRows::new(
        io::Cursor::new(csv.as_bytes().to_vec()),
        &Default::default(),
    )
    .unwrap();
    let session = session(channel).with_purpose(Some("membership"));
    let summary = import(&session, rows, 2, Progress::new(0)).await.unwrap();
    assert_eq!(*batches.lock().unwrap(), vec![2, 2, 1]);
    assert_eq!(*purposes.lock().unwrap(), vec!["membership"; 3]);
    assert_eq!(summary.rows, 6);
    assert_eq!(summary.created, 3);
    let rejected: Vec<(u64, &str)> = summary
        .rejected
        .iter()
        .map(|r| (r.row, r.code.as_str()))
        .collect();
    assert_eq!(
        rejected,
        vec![(2, "InvalidArgument"), (3, ""), (5, "InvalidArgument")]
    );
}

#[tokio::test]
async fn search_follows_page_tokens_and_watch_stops_when_caught_up() {
    let channel = mock::serve(mock::Mock::default()).await;
    let client = session(channel);
    let newsletter = client.with_purpose(Some("newsletter"));
    let mut out = Vec::new();
    let all = newsletter
        .search(Default::default(), true, &mut out)
        .await
        .unwrap();
    assert_eq!(
        (all.supporters, all.pages, all.next_page_token),
        (3, 2, None)
    );
    assert_eq!(String::from_utf8(out).unwrap().lines().count(), 3);
    let mut out = Vec::new();
    let one = client
        .search(Default::default(), false, &mut out)
        .await
        .unwrap();
    assert_eq!(one.next_page_token.as_deref(), Some("p2"));
    assert_eq!(one.supporters, 2);

    let mut out = Vec::new();
    let started = std::time::Instant::now();
    let seen = newsletter
        .watch(
            String::new(),
            false,
            Duration::from_millis(200),
            false,
            &mut out,
        )
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(seen.events, 3);
    assert_eq!(seen.cursor.as_deref(), Some("c3"));
    let text = String::from_utf8(out).unwrap();
    assert!(text.lines().all(|l| l.contains("created")), "{text}");
}

#[test]
fn a_closed_pipe_ends_the_output_quietly() {
    struct Closed;
    impl Write for Closed {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    assert!(matches!(write_line(&mut Closed, "x"), Ok(false)));
    let mut v = Vec::new();
    assert!(matches!(write_line(&mut v, "x"), Ok(true)));
    assert_eq!(v, b"x\n");
}
