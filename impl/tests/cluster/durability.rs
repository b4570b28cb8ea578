//! What the disk keeps: every acknowledged write survives a full restart; a torn WAL tail is
//! cut off, a flipped byte inside it refused with file and offset; a locked data directory.

use super::*;

#[test]
fn every_acknowledged_write_survives_a_full_restart() {
    let _serial = serial();
    let mut cluster = start(3);
    write_some(&cluster, 25);
    restart_all(&mut cluster);
    check_some(&cluster, 25);
    // And the restarted cluster keeps working, durably.
    let mut c = clerk(&cluster);
    c.append("all", "more").unwrap();
    restart_all(&mut cluster);
    assert!(clerk(&cluster).get("all").unwrap().ends_with("24,more"));
}

/// A record header that claims more payload than the file holds: what a crash in the middle of
/// a write leaves behind.
fn torn_record() -> Vec<u8> {
    let payload_len: u32 = 300;
    let mut header = Vec::new();
    header.extend_from_slice(&payload_len.to_le_bytes());
    header.extend_from_slice(&crc32fast::hash(&[7; 300]).to_le_bytes());
    let header_crc = crc32fast::hash(&header);
    header.extend_from_slice(&header_crc.to_le_bytes());
    assert_eq!(header.len(), RECORD_HEADER_LEN);
    header.extend_from_slice(&[7; 120]);
    header
}

#[test]
fn a_torn_wal_tail_is_cut_off_and_the_server_recovers() {
    let _serial = serial();
    let mut cluster = start(3);
    write_some(&cluster, 10);
    assert!(cluster.stop_all().is_empty());
    let wal = wal_path(&cluster, NodeId(1));
    let identity = Identity { cluster_id: cluster.cluster_id(), node: NodeId(1) };
    let limits = cluster.server_config(NodeId(1)).limits.storage();
    let open = || Storage::open(&cluster.data_dir(NodeId(1)), identity, limits).unwrap();
    let intact = open().0.records_end();
    // A write torn by a crash: a record cut short where the next record would go (over the
    // zero bytes written ahead of the records).
    let tear = || {
        let f = std::fs::OpenOptions::new().write(true).open(&wal).unwrap();
        std::os::unix::fs::FileExt::write_all_at(&f, &torn_record(), intact).unwrap();
    };
    tear();
    let (storage, recovered) = open();
    drop(storage);
    let after = file_len(&wal);
    let (path, offset, removed) = recovered.torn.clone().expect("the torn record is found");
    assert_eq!((path, offset), (wal.clone(), intact));
    assert!(removed >= (RECORD_HEADER_LEN + 120) as u64, "{removed} bytes cut");
    assert_eq!(after, intact, "the file is cut at the torn record");
    assert!(recovered.records > 0);

    // Once more with the torn bytes, through a real server start.
    tear();
    for id in 1..=3 {
        cluster.restart_server(NodeId(id)).expect("restarts");
    }
    check_some(&cluster, 10);
}

#[test]
fn a_flipped_byte_inside_the_wal_is_refused_with_file_and_offset() {
    let _serial = serial();
    let mut cluster = start(3);
    write_some(&cluster, 20);
    assert!(cluster.stop_all().is_empty());
    let wal = wal_path(&cluster, NodeId(1));
    let identity = Identity { cluster_id: cluster.cluster_id(), node: NodeId(1) };
    let limits = cluster.server_config(NodeId(1)).limits.storage();
    let records_end = Storage::open(&cluster.data_dir(NodeId(1)), identity, limits).unwrap().0.records_end();
    let mut bytes = std::fs::read(&wal).unwrap();
    let middle = records_end as usize / 2;
    bytes[middle] ^= 0x5a;
    std::fs::write(&wal, &bytes).unwrap();

    let err = cluster.restart_server(NodeId(1)).expect_err("a corrupt log must stop the server");
    let message = err.to_string();
    assert!(message.contains(&wal.display().to_string()), "{message}");
    assert!(message.contains("offset"), "{message}");
    match err {
        ServerError::Storage(StorageError::Corrupt { file, offset, .. }) => {
            assert_eq!(file, wal);
            assert!(offset <= middle as u64 && offset + 4096 > middle as u64, "offset {offset}, flip at {middle}");
        }
        other => panic!("expected a corrupt-log error, got {other}"),
    }
    // Nothing was cut: the damage is still there for a person to look at.
    assert_eq!(std::fs::read(&wal).unwrap(), bytes);
    // The two healthy servers still form a majority.
    cluster.restart_server(NodeId(2)).unwrap();
    cluster.restart_server(NodeId(3)).unwrap();
    check_some(&cluster, 20);
}

#[test]
fn a_second_server_on_the_same_data_directory_is_refused() {
    let _serial = serial();
    let cluster = start(3);
    let config = cluster.server_config(NodeId(2));
    let any = || TcpListener::bind("127.0.0.1:0").unwrap();
    let err = kvraft::start_with_listeners(config, any(), any()).expect_err("the directory is locked");
    assert!(matches!(err, ServerError::Storage(StorageError::Locked { .. })), "{err}");
    assert!(err.to_string().contains("in use"), "{err}");
}
