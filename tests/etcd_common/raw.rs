//! Raw access to the test's etcd through the client crate, beside tether: planting keys tether did
//! not write, reading back what it left, and the whole history of a key (every value it held, from
//! etcd's own revision log), so a test can check what was written and not only the last state.

use std::time::Duration;

use etcd_client::{Client, EventType, GetOptions, WatchOptions};

/// How long one raw request may take on a loaded machine before the test fails.
const WITHIN: Duration = Duration::from_secs(20);

fn run<T>(endpoint: &str, f: impl AsyncFnOnce(Client) -> T) -> T {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let c = Client::connect([format!("http://{endpoint}")], None)
            .await
            .unwrap_or_else(|e| panic!("connect to etcd at {endpoint}: {e}"));
        tokio::time::timeout(WITHIN, f(c))
            .await
            .unwrap_or_else(|_| panic!("etcd at {endpoint} did not answer within {WITHIN:?}"))
    })
}

pub fn put(endpoint: &str, key: &str, value: &[u8]) {
    run(endpoint, async |mut c| {
        c.put(key, value, None).await.unwrap();
    })
}

pub fn get(endpoint: &str, key: &str) -> Option<Vec<u8>> {
    run(endpoint, async |mut c| {
        let r = c.get(key, None).await.unwrap();
        r.kvs().first().map(|kv| kv.value().to_vec())
    })
}

/// Every key under `prefix` (as given, no separator added) with its value, in key order.
pub fn under(endpoint: &str, prefix: &str) -> Vec<(String, Vec<u8>)> {
    run(endpoint, async |mut c| {
        let r = c
            .get(prefix, Some(GetOptions::new().with_prefix()))
            .await
            .unwrap();
        r.kvs()
            .iter()
            .map(|kv| {
                (
                    String::from_utf8_lossy(kv.key()).into_owned(),
                    kv.value().to_vec(),
                )
            })
            .collect()
    })
}

/// Every value `key` has held, oldest first, up to its current one: a watch from revision 1
/// replays etcd's log (the tests' etcd never compacts). Empty when the key never existed.
pub fn history(endpoint: &str, key: &str) -> Vec<Vec<u8>> {
    run(endpoint, async |mut c| {
        let now = c.get(key, None).await.unwrap();
        let Some(last) = now.kvs().first().map(|kv| kv.mod_revision()) else {
            return Vec::new();
        };
        let mut stream = c
            .watch(key, Some(WatchOptions::new().with_start_revision(1)))
            .await
            .unwrap();
        let mut values = Vec::new();
        while let Some(resp) = stream.message().await.unwrap() {
            for ev in resp.events() {
                let Some(kv) = ev.kv() else { continue };
                if ev.event_type() == EventType::Put {
                    values.push(kv.value().to_vec());
                }
                if kv.mod_revision() >= last {
                    return values;
                }
            }
        }
        panic!("the watch of {key} ended before revision {last}")
    })
}
