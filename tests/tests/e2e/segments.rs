//! Campaign workflows end to end: segments (Search), bulk import and the change feed.

use std::collections::BTreeSet;

use tonic::Code;
use vault_proto::v1 as pb;

use vault_tests::{Creds, Daemon, authed, supporter};

fn consent(purpose: &str, channel: &str) -> pb::ConsentRequest {
    pb::ConsentRequest {
        purpose: purpose.into(),
        channel: channel.into(),
        source: "import".into(),
        notice_version: "2026-10".into(),
        ..Default::default()
    }
}

/// Streams a whole search, following page tokens; returns ids in order and page count.
async fn search_all(d: &Daemon, creds: &Creds, mut req: pb::SearchRequest) -> (Vec<String>, usize) {
    let mut c = d.supporters().await;
    let mut ids = Vec::new();
    let mut pages = 0;
    loop {
        let resp = c.search(authed(req.clone(), creds)).await.unwrap();
        let next = resp
            .metadata()
            .get(vault_proto::metadata::NEXT_PAGE_TOKEN)
            .map(|v| v.to_str().unwrap().to_owned());
        let mut stream = resp.into_inner();
        while let Some(s) = stream.message().await.unwrap() {
            ids.push(s.id);
        }
        pages += 1;
        match next {
            Some(t) => req.page_token = t,
            None => return (ids, pages),
        }
    }
}

#[tokio::test]
async fn search_returns_exactly_the_segment() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path());
    // Collects for event invitations (sees postcode and tags), records newsletter consent.
    let form = d
        .create_client(
            "form",
            "campaign-tool",
            &["event-invitations", "newsletter"],
        )
        .await
        .with_purpose(Some("event-invitations"));
    let dpo = d.dpo().await;
    let tags = ["volunteer", "donor", "youth"];
    let postcodes = ["75011", "69001", "13001"];
    // Generated population: person i has tag set from bits of i, a postcode, and email
    // consent for event invitations unless i % 5 == 0.
    let mut people = Vec::new();
    let mut rows = Vec::new();
    for i in 0..120u32 {
        let mut s = supporter("P", &format!("N{i}"), &format!("p{i}@example.fr"), "");
        s.tags = tags
            .iter()
            .enumerate()
            .filter(|(b, _)| i & (1 << b) != 0)
            .map(|(_, t)| (*t).to_owned())
            .collect();
        s.address = Some(pb::Address {
            postcode: postcodes[(i % 3) as usize].into(),
            ..Default::default()
        });
        let consents = i % 5 != 0;
        s.consents = if consents {
            vec![consent("event-invitations", "email")]
        } else {
            vec![]
        };
        people.push((i, s.tags.clone(), postcodes[(i % 3) as usize], consents));
        rows.push(s);
    }
    // Rows without consent are refused by the purpose (no basis): they come in through the
    // membership-less form only with consent; count them as rejected.
    let summary = d
        .supporters()
        .await
        .import(authed(tokio_stream::iter(rows), &form))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(summary.created, 96);
    assert_eq!(summary.rejected.len(), 24);
    let mut ids = std::collections::HashMap::new();
    let mut c = d.supporters().await;
    for (i, ..) in people.iter().filter(|p| p.3) {
        let s = c
            .lookup(authed(
                pb::LookupRequest {
                    key: Some(pb::lookup_request::Key::Email(format!("p{i}@example.fr"))),
                },
                &form,
            ))
            .await
            .unwrap()
            .into_inner();
        ids.insert(*i, s.id);
    }
    // Restrict one person and have another object to email: both leave every segment.
    let restricted = ids[&7].clone();
    let objected = ids[&11].clone();
    d.rights()
        .await
        .restrict(authed(
            pb::RestrictRequest {
                subject_id: restricted.clone(),
                request_ref: "R-1".into(),
            },
            &dpo,
        ))
        .await
        .unwrap();
    d.rights()
        .await
        .object(authed(
            pb::ObjectRequest {
                subject_id: objected.clone(),
                channels: vec!["email".into()],
                request_ref: "O-1".into(),
            },
            &dpo,
        ))
        .await
        .unwrap();
    let erased = ids[&13].clone();
    d.rights()
        .await
        .erase(authed(
            pb::EraseRequest {
                subject_id: erased.clone(),
                request_ref: "E-1".into(),
                suppress: false,
            },
            &dpo,
        ))
        .await
        .unwrap();
    let excluded: BTreeSet<&String> = [&restricted, &objected, &erased].into_iter().collect();

    let cases: Vec<(Vec<&str>, Vec<&str>, Vec<&str>)> = vec![
        (vec![], vec![], vec![]),
        (vec!["volunteer"], vec![], vec![]),
        (vec!["volunteer", "donor"], vec![], vec![]),
        (vec![], vec!["donor", "youth"], vec![]),
        (vec![], vec![], vec!["75011"]),
        (vec!["youth"], vec![], vec!["75011", "13001"]),
        (vec!["volunteer"], vec!["donor", "youth"], vec!["69001"]),
        (vec!["nobody-has-this"], vec![], vec![]),
    ];
    for (all, any, pcs) in cases {
        let expected: Vec<String> = {
            let mut v: Vec<String> = people
                .iter()
                .filter(|(_, t, pc, consents)| {
                    *consents
                        && all.iter().all(|a| t.iter().any(|x| x == a))
                        && (any.is_empty() || any.iter().any(|a| t.iter().any(|x| x == a)))
                        && (pcs.is_empty() || pcs.contains(pc))
                })
                .map(|(i, ..)| ids[i].clone())
                .filter(|id| !excluded.contains(id))
                .collect();
            v.sort();
            v
        };
        for page_size in [0, 7] {
            let (got, pages) = search_all(
                &d,
                &form,
                pb::SearchRequest {
                    tags_all: all.iter().map(|s| (*s).to_owned()).collect(),
                    tags_any: any.iter().map(|s| (*s).to_owned()).collect(),
                    postcodes: pcs.iter().map(|s| (*s).to_owned()).collect(),
                    consent_channel: "email".into(),
                    page_size,
                    ..Default::default()
                },
            )
            .await;
            assert_eq!(got, expected, "all={all:?} any={any:?} postcodes={pcs:?}");
            if page_size == 7 {
                assert_eq!(pages, expected.len().div_ceil(7).max(1), "pages of 7");
            }
        }
    }
    // Fields are projected by purpose: the newsletter purpose never sees a phone or address.
    let news = d.tool("newsletter").await;
    let (got, _) = search_all(&d, &news, pb::SearchRequest::default()).await;
    assert!(got.is_empty(), "nobody consented to the newsletter");
    // A forged or foreign page token is refused.
    let err = c
        .search(authed(
            pb::SearchRequest {
                page_token: "76310030.0011".into(),
                ..Default::default()
            },
            &form,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let first = c
        .search(authed(
            pb::SearchRequest {
                tags_all: vec!["volunteer".into()],
                page_size: 2,
                ..Default::default()
            },
            &form,
        ))
        .await
        .unwrap();
    let token = first
        .metadata()
        .get(vault_proto::metadata::NEXT_PAGE_TOKEN)
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let err = c
        .search(authed(
            pb::SearchRequest {
                tags_all: vec!["donor".into()],
                page_size: 2,
                page_token: token,
                ..Default::default()
            },
            &form,
        ))
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Code::InvalidArgument,
        "a token is bound to its query"
    );
    // Another purpose's consent cannot be searched.
    let err = c
        .search(authed(
            pb::SearchRequest {
                consent_purpose: "newsletter".into(),
                ..Default::default()
            },
            &form,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn import_reports_bad_rows_and_a_rerun_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path());
    let member = d.tool("membership").await;
    let mut rows = Vec::new();
    for i in 0..50 {
        let mut s = supporter("A", &format!("B{i}"), &format!("m{i}@example.fr"), "");
        s.source = "file:members-2026.csv".into();
        rows.push(s);
    }
    // Bad rows: an invalid email (row 11), no contact at all (row 21), a bad phone (row 31),
    // an oversized name (row 41), and row 46 repeats row 1's email (a merge, not an error).
    rows[10].email = "not-an-email".into();
    rows[20].email.clear();
    rows[30].phone = "12".into();
    rows[40].given_name = "x".repeat(10_000);
    rows[45].email = "m0@example.fr".into();
    rows[45].given_name = "A".into();
    rows[45].family_name = "B0".into();
    let summary = d
        .supporters()
        .await
        .import(authed(tokio_stream::iter(rows.clone()), &member))
        .await
        .unwrap()
        .into_inner();
    let rejected: Vec<u64> = summary.rejected.iter().map(|r| r.row).collect();
    assert_eq!(rejected, vec![11, 21, 31, 41]);
    assert!(
        summary
            .rejected
            .iter()
            .all(|r| !r.reason.is_empty() && r.code == "InvalidArgument")
    );
    assert_eq!(summary.created, 45);
    assert_eq!(summary.created + summary.updated + summary.unchanged, 46);
    // Nothing partial of a bad row: its email finds nobody.
    let mut c = d.supporters().await;
    let err = c
        .lookup(authed(
            pb::LookupRequest {
                key: Some(pb::lookup_request::Key::Email("m30@example.fr".into())),
            },
            &member,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    // The source is recorded on every row.
    let s = c
        .lookup(authed(
            pb::LookupRequest {
                key: Some(pb::lookup_request::Key::Email("m5@example.fr".into())),
            },
            &member,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(s.source, "file:members-2026.csv");
    // Re-running the same file changes nothing.
    let feed_before = feed(&d, &member, "").await.len();
    let again = d
        .supporters()
        .await
        .import(authed(tokio_stream::iter(rows), &member))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((again.created, again.updated), (0, 0));
    assert_eq!(again.unchanged, 46);
    assert_eq!(again.rejected.len(), 4);
    assert_eq!(feed(&d, &member, "").await.len(), feed_before);
}

/// Every change event currently in the feed after `cursor`.
async fn feed(d: &Daemon, creds: &Creds, cursor: &str) -> Vec<pb::ChangeEvent> {
    let mut stream = d
        .supporters()
        .await
        .watch(authed(
            pb::WatchRequest {
                cursor: cursor.into(),
            },
            creds,
        ))
        .await
        .unwrap()
        .into_inner();
    let mut out = Vec::new();
    // The feed stays open; once it is quiet for a moment everything is in.
    while let Ok(Some(e)) =
        tokio::time::timeout(std::time::Duration::from_millis(700), stream.message())
            .await
            .map(|r| r.unwrap())
    {
        out.push(e);
    }
    out
}

#[tokio::test]
async fn watch_shows_withdrawal_erasure_restriction_and_resumes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::start(dir.path());
    let news = d.tool("newsletter").await;
    let dpo = d.dpo().await;
    let mut c = d.supporters().await;
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(
            c.upsert(authed(
                pb::UpsertRequest {
                    supporter: Some(supporter("W", "W", &format!("w{i}@example.fr"), "")),
                    consents: vec![consent("newsletter", "email")],
                },
                &news,
            ))
            .await
            .unwrap()
            .into_inner()
            .id,
        );
    }
    let start = feed(&d, &news, "").await;
    let kinds: Vec<&str> = start.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "created",
            "consent-granted",
            "created",
            "consent-granted",
            "created",
            "consent-granted"
        ]
    );
    assert!(start.iter().all(|e| !e.cursor.is_empty() && e.at.is_some()));
    let mark = start.last().unwrap().cursor.clone();

    let mut w = pb::ConsentRequest {
        subject_id: ids[0].clone(),
        ..consent("newsletter", "email")
    };
    w.source = "email".into();
    d.consent().await.withdraw(authed(w, &news)).await.unwrap();
    d.rights()
        .await
        .restrict(authed(
            pb::RestrictRequest {
                subject_id: ids[1].clone(),
                request_ref: "R-1".into(),
            },
            &dpo,
        ))
        .await
        .unwrap();
    d.rights()
        .await
        .erase(authed(
            pb::EraseRequest {
                subject_id: ids[2].clone(),
                request_ref: "E-1".into(),
                suppress: false,
            },
            &dpo,
        ))
        .await
        .unwrap();
    // Resumed from the mark (after a restart: the feed is durable): exactly the new events.
    d.terminate();
    let d = Daemon::start(dir.path());
    let resumed = feed(&d, &news, &mark).await;
    let got: Vec<(&str, &str)> = resumed
        .iter()
        .map(|e| (e.kind.as_str(), e.subject_id.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("consent-withdrawn", ids[0].as_str()),
            ("restricted", ids[1].as_str()),
            ("erased", ids[2].as_str()),
        ]
    );
    assert_eq!(resumed[0].purpose, "newsletter");
    assert_eq!(resumed[0].channel, "email");
    // Replayed from the start, the three people's earlier events are not shown any more
    // (none of them has a basis for the newsletter now), only the events that ended it.
    let all = feed(&d, &news, "").await;
    assert_eq!(
        all.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>(),
        ["consent-withdrawn", "restricted", "erased"]
    );
    // Resuming from any event's cursor replays exactly what follows it.
    for (i, e) in all.iter().enumerate() {
        let after = feed(&d, &news, &e.cursor).await;
        assert_eq!(after, all[i + 1..].to_vec());
        if i > 2 {
            break;
        }
    }
    // Events carry no personal data.
    for e in &all {
        let text = format!("{e:?}");
        assert!(!text.contains("example.fr"), "{text}");
    }
    // A malformed cursor is refused.
    let err = d
        .supporters()
        .await
        .watch(authed(
            pb::WatchRequest {
                cursor: "nope".into(),
            },
            &news,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
}
