//! The lab tests built on GenericTest: clients, partitions, crashes and snapshots, each
//! configuration one test.

use super::*;

#[test]
fn basic_3a() {
    generic_test(Generic {
        name: "basic_3a",
        clients: 1,
        servers: 5,
        unreliable: false,
        crash: false,
        partitions: false,
        max_raft_state: None,
        random_keys: false,
    });
}

#[test]
fn concurrent_3a() {
    generic_test(Generic {
        name: "concurrent_3a",
        clients: 5,
        servers: 5,
        unreliable: false,
        crash: false,
        partitions: false,
        max_raft_state: None,
        random_keys: false,
    });
}

#[test]
fn unreliable_3a() {
    generic_test(Generic {
        name: "unreliable_3a",
        clients: 5,
        servers: 5,
        unreliable: true,
        crash: false,
        partitions: false,
        max_raft_state: None,
        random_keys: false,
    });
}

#[test]
fn many_partitions_one_client_3a() {
    generic_test(Generic {
        name: "many_partitions_one_client_3a",
        clients: 1,
        servers: 5,
        unreliable: false,
        crash: false,
        partitions: true,
        max_raft_state: None,
        random_keys: false,
    });
}

#[test]
fn many_partitions_many_clients_3a() {
    generic_test(Generic {
        name: "many_partitions_many_clients_3a",
        clients: 5,
        servers: 5,
        unreliable: false,
        crash: false,
        partitions: true,
        max_raft_state: None,
        random_keys: false,
    });
}

#[test]
fn persist_one_client_3a() {
    generic_test(Generic {
        name: "persist_one_client_3a",
        clients: 1,
        servers: 5,
        unreliable: false,
        crash: true,
        partitions: false,
        max_raft_state: None,
        random_keys: false,
    });
}

#[test]
fn persist_concurrent_3a() {
    generic_test(Generic {
        name: "persist_concurrent_3a",
        clients: 5,
        servers: 5,
        unreliable: false,
        crash: true,
        partitions: false,
        max_raft_state: None,
        random_keys: false,
    });
}

#[test]
fn persist_concurrent_unreliable_3a() {
    generic_test(Generic {
        name: "persist_concurrent_unreliable_3a",
        clients: 5,
        servers: 5,
        unreliable: true,
        crash: true,
        partitions: false,
        max_raft_state: None,
        random_keys: false,
    });
}

#[test]
fn persist_partition_3a() {
    generic_test(Generic {
        name: "persist_partition_3a",
        clients: 5,
        servers: 5,
        unreliable: false,
        crash: true,
        partitions: true,
        max_raft_state: None,
        random_keys: false,
    });
}

#[test]
fn persist_partition_unreliable_3a() {
    generic_test(Generic {
        name: "persist_partition_unreliable_3a",
        clients: 5,
        servers: 5,
        unreliable: true,
        crash: true,
        partitions: true,
        max_raft_state: None,
        random_keys: false,
    });
}

#[test]
fn persist_partition_unreliable_linearizable_3a() {
    generic_test(Generic {
        name: "persist_partition_unreliable_linearizable_3a",
        clients: 15,
        servers: 7,
        unreliable: true,
        crash: true,
        partitions: true,
        max_raft_state: None,
        random_keys: true,
    });
}

#[test]
fn snapshot_recover_3b() {
    generic_test(Generic {
        name: "snapshot_recover_3b",
        clients: 1,
        servers: 5,
        unreliable: false,
        crash: true,
        partitions: false,
        max_raft_state: Some(1000),
        random_keys: false,
    });
}

#[test]
fn snapshot_recover_many_clients_3b() {
    generic_test(Generic {
        name: "snapshot_recover_many_clients_3b",
        clients: 20,
        servers: 5,
        unreliable: false,
        crash: true,
        partitions: false,
        max_raft_state: Some(1000),
        random_keys: false,
    });
}

#[test]
fn snapshot_unreliable_3b() {
    generic_test(Generic {
        name: "snapshot_unreliable_3b",
        clients: 5,
        servers: 5,
        unreliable: true,
        crash: false,
        partitions: false,
        max_raft_state: Some(1000),
        random_keys: false,
    });
}

#[test]
fn snapshot_unreliable_recover_3b() {
    generic_test(Generic {
        name: "snapshot_unreliable_recover_3b",
        clients: 5,
        servers: 5,
        unreliable: true,
        crash: true,
        partitions: false,
        max_raft_state: Some(1000),
        random_keys: false,
    });
}

#[test]
fn snapshot_unreliable_recover_concurrent_partition_3b() {
    generic_test(Generic {
        name: "snapshot_unreliable_recover_concurrent_partition_3b",
        clients: 5,
        servers: 5,
        unreliable: true,
        crash: true,
        partitions: true,
        max_raft_state: Some(1000),
        random_keys: false,
    });
}

#[test]
fn snapshot_unreliable_recover_concurrent_partition_linearizable_3b() {
    generic_test(Generic {
        name: "snapshot_unreliable_recover_concurrent_partition_linearizable_3b",
        clients: 15,
        servers: 7,
        unreliable: true,
        crash: true,
        partitions: true,
        max_raft_state: Some(1000),
        random_keys: true,
    });
}
