use super::*;
use crate::journal::{COMMANDS_KEPT, PRUNE_COMMANDS_EVERY};
use lpe_core::events::NodeEvent;
use lpe_core::spec::{SourceSpec, default_ladder};

fn spec(name: &str) -> StreamSpec {
    StreamSpec {
        name: name.into(),
        source: SourceSpec::Rtmp {
            stream_key: "abcdefgh1234".into(),
        },
        ladder: default_ladder(),
        encoder: None,
        enabled: true,
        offload: false,
        restream: Vec::new(),
        recording: Default::default(),
        ai: Default::default(),
        privacy: Default::default(),
    }
}

#[test]
fn streams_survive_reopen_and_bad_rows_are_isolated() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("node.db");
    {
        let s = Store::open(&path).expect("open");
        s.write_blocking(move |w| w.insert_stream("a", &spec("one"), 1))
            .expect("insert");
        s.write_blocking(move |w| w.insert_stream("b", &spec("two"), 2))
            .expect("insert");
        assert!(
            s.write_blocking(move |w| w.update_stream("a", &spec("uno"), 3))
                .expect("update")
        );
        assert!(
            !s.write_blocking(move |w| w.update_stream("zz", &spec("x"), 3))
                .expect("update")
        );
        s.write_blocking(move |w| w.set_meta("k", "v"))
            .expect("meta");
    }
    {
        let conn = Connection::open(&path).expect("raw open");
        conn.execute("UPDATE streams SET spec = '{broken' WHERE id = 'b'", [])
            .expect("corrupt a row");
    }
    let s = Store::open(&path).expect("reopen");
    let (ok, bad) = s.list_streams().expect("list");
    assert_eq!(ok.len(), 1);
    assert_eq!(ok[0].spec.name, "uno");
    assert_eq!(bad.len(), 1);
    assert_eq!(s.get_meta("k").expect("meta").as_deref(), Some("v"));
    assert!(
        s.write_blocking(move |w| w.delete_stream("a"))
            .expect("delete")
    );
    assert!(s.get_stream("a").expect("get").is_none());
}

fn event(i: u64) -> NodeEvent {
    NodeEvent {
        ts_ms: i,
        stream_id: None,
        kind: lpe_core::events::EventKind::SettingsChanged,
        message: format!("event {i}"),
        object: None,
    }
}

#[test]
fn an_alert_is_acknowledged_once_and_leaves_the_open_ones() {
    use lpe_core::events::EventKind;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("node.db");
    let s = Store::open(&path).expect("store");
    let of = |kind, stream: &str| NodeEvent {
        kind,
        stream_id: Some(stream.into()),
        ..event(1)
    };
    let batch = vec![
        of(EventKind::StreamError, "a"),
        of(EventKind::StreamUp, "a"),
        of(EventKind::AudioSilent, "b"),
    ];
    s.write_blocking(move |w| w.insert_events(&batch))
        .expect("events");
    let alerts = ["stream_error", "audio_silent"];
    let open = |s: &Store, stream_id| {
        s.recent_events(
            &EventFilter {
                stream_id,
                kinds: Some(&alerts),
                unacknowledged: true,
            },
            10,
        )
        .expect("open alerts")
        .into_iter()
        .map(|e| e.kind)
        .collect::<Vec<_>>()
    };
    assert_eq!(open(&s, None), ["audio_silent", "stream_error"]);
    assert_eq!(open(&s, Some("a")), ["stream_error"]);
    let first = s.recent_events(&EventFilter::default(), 10).expect("all")[2].clone();
    assert_eq!(first.kind, "stream_error");
    assert_eq!(first.acknowledged_ms, None);

    let id = first.id;
    let acked = s
        .write_blocking(move |w| w.acknowledge_event(id, "ada", 5000))
        .expect("ack")
        .expect("the event");
    assert_eq!(
        (acked.acknowledged_ms, acked.acknowledged_by.as_deref()),
        (Some(5000), Some("ada"))
    );
    // The first acknowledgement stands.
    let again = s
        .write_blocking(move |w| w.acknowledge_event(id, "bob", 9000))
        .expect("ack")
        .expect("the event");
    assert_eq!(again.acknowledged_by.as_deref(), Some("ada"));
    assert_eq!(again.acknowledged_ms, Some(5000));
    assert!(
        s.write_blocking(|w| w.acknowledge_event(999, "ada", 1))
            .expect("ack")
            .is_none()
    );
    assert_eq!(open(&s, None), ["audio_silent"]);
    // Durable: the acknowledgement is there after a reopen.
    drop(s);
    let s = Store::open(&path).expect("reopen");
    assert_eq!(open(&s, None), ["audio_silent"]);
    assert_eq!(
        s.event(id).expect("event").and_then(|e| e.acknowledged_by),
        Some("ada".into())
    );
}

#[test]
fn journal_writes_leave_full_durability_for_everything_else() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Store::open(&dir.path().join("node.db")).expect("store");
    let synchronous = |s: &Store| -> i64 {
        s.write_blocking(|w| {
            Ok(w.conn()?
                .pragma_query_value(None, "synchronous", |r| r.get(0))?)
        })
        .expect("pragma")
    };
    let left_by_journal = |s: &Store| -> i64 {
        s.write_blocking(|w| {
            Ok(w.conn
                .pragma_query_value(None, "synchronous", |r| r.get(0))?)
        })
        .expect("pragma")
    };
    assert_eq!(synchronous(&s), 2, "FULL");
    let batch: Vec<NodeEvent> = (1..=1200).map(event).collect();
    s.write_blocking(move |w| w.insert_events(&batch))
        .expect("events");
    assert!(
        s.write_blocking(move |w| w.claim_command("r1", "log_level", "{}", 1))
            .expect("claim")
    );
    s.write_blocking(move |w| w.set_command_result("r1", "{}"))
        .expect("result");
    assert_eq!(left_by_journal(&s), 1, "journal writes run at NORMAL");
    assert_eq!(synchronous(&s), 2, "FULL again for everything else");
    // A failing journal write leaves nothing relaxed for others either.
    let failed =
        s.write_blocking(|w| w.journal(|c| c.execute("INSERT INTO no_such_table VALUES (1)", [])));
    assert!(failed.is_err());
    assert_eq!(synchronous(&s), 2);
    // A durable write after journal writes commits at FULL.
    s.write_blocking(|w| w.journal(|c| c.execute("DELETE FROM meta WHERE key = 'none'", [])))
        .expect("journal");
    s.write_blocking(move |w| w.set_meta("k", "v"))
        .expect("meta");
    assert_eq!(left_by_journal(&s), 2);
    // One batch, in order.
    let newest = s.recent_events(&EventFilter::default(), 2).expect("recent");
    assert_eq!(newest[0].message, "event 1200");
    assert_eq!(newest[1].message, "event 1199");
}

#[test]
fn the_checkpointer_copies_the_wal_into_the_database() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("node.db");
    let s = Store::open(&path).expect("store");
    let before = std::fs::metadata(&path).expect("db").len();
    let batch: Vec<NodeEvent> = (1..=2000).map(event).collect();
    s.write_blocking(move |w| w.insert_events(&batch))
        .expect("events");
    // The writer never checkpoints itself; the checkpointer thread does, within a period.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while std::fs::metadata(&path).expect("db").len() <= before {
        assert!(
            std::time::Instant::now() < deadline,
            "no checkpoint within 5 s"
        );
        std::thread::sleep(CHECKPOINT_EVERY / 5);
    }
    drop(s);
    let reopened = Store::open(&path).expect("reopen");
    assert_eq!(
        reopened
            .recent_events(&EventFilter::default(), 1)
            .expect("recent")
            .len(),
        1
    );
}

#[test]
fn commands_are_claimed_once_and_unfinished_ones_fail_at_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Store::open(&dir.path().join("node.db")).expect("store");
    assert!(
        s.write_blocking(move |w| w.claim_command("r1", "x", r#"{"state":"accepted"}"#, 1))
            .expect("claim")
    );
    assert!(
        !s.write_blocking(move |w| w.claim_command("r1", "x", r#"{"state":"accepted"}"#, 2))
            .expect("again")
    );
    assert!(
        s.write_blocking(move |w| w.claim_command("r2", "x", r#"{"state":"accepted"}"#, 3))
            .expect("claim")
    );
    s.write_blocking(move |w| w.set_command_result("r2", r#"{"state":"succeeded"}"#))
        .expect("finish");
    assert_eq!(
        s.write_blocking(move |w| w.fail_unfinished_commands("cut short"))
            .expect("fail"),
        1
    );
    let r1: serde_json::Value =
        serde_json::from_str(&s.command_result("r1").expect("get").expect("r1")).expect("json");
    assert_eq!(r1["state"], "failed");
    assert_eq!(r1["reason"], "cut short");
    let r2 = s.command_result("r2").expect("get").expect("r2");
    assert!(r2.contains("succeeded"));
}

#[test]
fn command_results_are_pruned_to_the_newest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("node.db");
    let total = COMMANDS_KEPT + i64::from(PRUNE_COMMANDS_EVERY) + 5;
    {
        // Fill below the claim path (one transaction), as years of commands would.
        let s = Store::open(&path).expect("store");
        s.write_blocking(move |w| {
            let tx = w.conn()?.transaction()?;
            for i in 0..total {
                tx.execute(
                    "INSERT INTO command_results VALUES (?1, 'x', '{}', ?2)",
                    params![format!("old-{i}"), i],
                )?;
            }
            Ok(tx.commit()?)
        })
        .expect("fill");
    }
    let count = |s: &Store| -> i64 {
        s.read()
            .expect("conn")
            .query_row("SELECT count(*) FROM command_results", [], |r| r.get(0))
            .expect("count")
    };
    // The first claim after opening prunes; the following ones do not, until the next
    // period.
    let s = Store::open(&path).expect("reopen");
    assert!(
        s.write_blocking(move |w| w.claim_command("new-0", "x", "{}", total as u64))
            .expect("claim")
    );
    assert_eq!(count(&s), COMMANDS_KEPT + 1);
    assert!(s.command_result("old-0").expect("get").is_none());
    let newest_old = format!("old-{}", total - 1);
    assert!(s.command_result(&newest_old).expect("get").is_some());
    for i in 1..PRUNE_COMMANDS_EVERY {
        let id = format!("new-{i}");
        assert!(
            s.write_blocking(move |w| w.claim_command(
                &id,
                "x",
                "{}",
                (total + i64::from(i)) as u64
            ))
            .expect("claim")
        );
    }
    assert_eq!(count(&s), COMMANDS_KEPT + i64::from(PRUNE_COMMANDS_EVERY));
    // A repeat is not a claim and does not count.
    assert!(
        !s.write_blocking(move |w| w.claim_command("new-1", "x", "{}", 0))
            .expect("repeat")
    );
    assert!(
        s.write_blocking(move |w| w.claim_command("last", "x", "{}", u64::MAX >> 1))
            .expect("claim")
    );
    assert_eq!(count(&s), COMMANDS_KEPT + 1);
    let oldest_kept_before = format!("old-{}", total - COMMANDS_KEPT);
    assert!(
        s.command_result(&oldest_kept_before)
            .expect("get")
            .is_none()
    );
    assert!(s.command_result("new-0").expect("get").is_some());
    assert!(s.command_result("last").expect("get").is_some());
}

#[test]
fn command_results_survive_the_move_to_one_btree() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("node.db");
    {
        // A database at schema 4, with a command result in it.
        let conn = Connection::open(&path).expect("open");
        for (i, sql) in MIGRATIONS.iter().take(4).enumerate() {
            conn.execute_batch(&format!(
                "BEGIN; {sql}; PRAGMA user_version = {}; COMMIT;",
                i + 1
            ))
            .expect("migrate");
        }
        conn.execute(
            "INSERT INTO command_results VALUES ('r1', 'log_level', '{\"state\":\"succeeded\"}', 7)",
            [],
        )
        .expect("insert");
    }
    let s = Store::open(&path).expect("open at the current schema");
    assert_eq!(
        s.command_result("r1").expect("get").as_deref(),
        Some(r#"{"state":"succeeded"}"#)
    );
    assert!(
        !s.write_blocking(move |w| w.claim_command("r1", "log_level", "{}", 8))
            .expect("repeat")
    );
    let without_rowid: String = s
        .read()
        .expect("conn")
        .query_row(
            "SELECT sql FROM sqlite_schema WHERE name = 'command_results'",
            [],
            |r| r.get(0),
        )
        .expect("schema");
    assert!(without_rowid.contains("WITHOUT ROWID"), "{without_rowid}");
}

#[test]
fn winning_tickets_are_recorded_once_and_move_through_states() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("node.db");
    let w = WinningTicket {
        ticket: lpe_pm::ticket::Ticket {
            recipient: lpe_pm::Address::repeat_byte(1),
            sender: lpe_pm::Address::repeat_byte(2),
            face_value: lpe_pm::U256::from(10u64).pow(lpe_pm::U256::from(20u8)),
            win_prob: lpe_pm::U256::MAX,
            sender_nonce: 7,
            recipient_rand_hash: lpe_pm::B256::repeat_byte(3),
            expiration: lpe_pm::ticket::ExpirationParams {
                creation_round: 9,
                creation_round_block_hash: lpe_pm::B256::repeat_byte(4),
            },
        },
        sig: vec![5; 65],
        recipient_rand: lpe_pm::U256::from(99u8),
        params_expiration_block: lpe_pm::U256::from(140u8),
    };
    {
        let s = Store::open(&path).expect("open");
        let t = w.clone();
        s.write_blocking(move |db| db.record_tickets(5, std::slice::from_ref(&t), 1))
            .expect("record");
        let t = w.clone();
        s.write_blocking(move |db| db.record_tickets(1, std::slice::from_ref(&t), 2))
            .expect("record again");
    }
    let s = Store::open(&path).expect("reopen");
    let pending = s.unredeemed_tickets(u64::MAX).expect("pending");
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].winning.as_ref(), Some(&w));
    let hash = pending[0].ticket_hash.clone();
    let h = hash.clone();
    s.write_blocking(move |w| w.set_ticket_state(&h, TicketState::Submitted, None, None, None, 3))
        .expect("state");
    s.write_blocking(move |w| {
        w.set_ticket_state(
            &hash,
            TicketState::Redeemed,
            Some("0xabc"),
            Some("100"),
            None,
            4,
        )
    })
    .expect("state");
    assert!(s.unredeemed_tickets(u64::MAX).expect("pending").is_empty());
    let counts = s.ticket_counts().expect("counts");
    assert_eq!(
        counts,
        TicketCounts {
            received: 6,
            won: 1,
            redeemed: 1,
            failed: 0,
            expired: 0,
            pending: 0,
            earned: "100".into(),
        }
    );
    let recent = s.recent_tickets(10).expect("recent");
    assert_eq!(recent[0].tx_hash.as_deref(), Some("0xabc"));
    assert_eq!(recent[0].attempts, 1);
}

#[test]
fn a_file_that_is_not_a_database_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("node.db");
    std::fs::write(
        &path,
        b"this is not sqlite at all, just some text padding it out....",
    )
    .expect("write");
    assert!(Store::open(&path).is_err());
}

#[test]
fn a_detection_is_written_once_and_updated_in_place() {
    use crate::{DetectionQuery, DetectionRecord};
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Store::open(&dir.path().join("node.db")).expect("store");
    let person = DetectionRecord {
        id: "d1".into(),
        stream_id: "s1".into(),
        label: "person".into(),
        score: 0.8,
        bbox: [0.1, 0.2, 0.3, 0.4],
        zones: vec!["door".into()],
        started_ms: 1000,
        updated_ms: 1000,
        ended_ms: None,
        snapshot: true,
    };
    let car = DetectionRecord {
        id: "d2".into(),
        label: "car".into(),
        started_ms: 2000,
        updated_ms: 2000,
        zones: vec![],
        ..person.clone()
    };
    for d in [person.clone(), car.clone()] {
        s.write_blocking(move |w| w.put_detection(&d)).expect("put");
    }
    let ended = DetectionRecord {
        score: 0.9,
        ended_ms: Some(5000),
        updated_ms: 5000,
        ..person.clone()
    };
    let e = ended.clone();
    s.write_blocking(move |w| w.put_detection(&e))
        .expect("update");
    assert_eq!(s.detection("d1").expect("get"), Some(ended.clone()));
    let all = |q: DetectionQuery| s.detections(&q).expect("list");
    let q = DetectionQuery {
        limit: 10,
        ..Default::default()
    };
    assert_eq!(all(q.clone()), vec![car.clone(), ended.clone()]);
    assert_eq!(
        all(DetectionQuery {
            label: Some("person"),
            ..q.clone()
        }),
        vec![ended]
    );
    assert_eq!(
        all(DetectionQuery {
            since_ms: Some(1500),
            ..q.clone()
        }),
        vec![car]
    );
    assert!(
        all(DetectionQuery {
            stream_id: Some("s2"),
            ..q
        })
        .is_empty()
    );
}

#[test]
fn a_sound_database_checks_ok_and_a_damaged_one_does_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("node.db");
    let s = Store::open(&path).expect("open");
    s.write_blocking(move |w| w.insert_stream("a", &spec("one"), 1))
        .expect("insert");
    // Beside the open store, as the command line does it beside a running node.
    assert_eq!(check(&path).expect("check"), Vec::<String>::new());
    drop(s);
    rusqlite::Connection::open(&path)
        .and_then(|c| c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())))
        .expect("checkpoint");

    // A page of the tables overwritten: the check names it (or cannot read it).
    let mut bytes = std::fs::read(&path).expect("read");
    let page = 4096;
    assert!(bytes.len() > 3 * page, "{} bytes", bytes.len());
    for b in &mut bytes[2 * page + 8..3 * page] {
        *b = 0xA5;
    }
    std::fs::write(&path, &bytes).expect("write");
    let _ = std::fs::remove_file(dir.path().join("node.db-wal"));
    if let Ok(problems) = check(&path) {
        assert!(!problems.is_empty(), "damage not seen");
    }
}
