//! Micro-benchmarks of the subscription trie: what routing one publish
//! costs as the number of subscriptions that do NOT match grows (1 to
//! 1 000 000: it should stay flat), and as the number of subscribers that DO
//! match grows (1 to 10 000: it should grow linearly).
//!
//! Run with `cargo bench --bench trie`; `bench/curves.py` turns the results
//! into the tables and chart in docs/benchmarks.md.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use sol::protocol::{QoS, TopicFilter, TopicName};
use sol::trie::SubscriptionTrie;

const TOPIC: &str = "sensors/target/temp";

/// A trie with the one filter `TOPIC` matches (one subscriber) and `n - 1`
/// filters that do not, in four shapes: exact, `+` last, `+` first and `#`,
/// so that the wildcard branches the walk visits are crowded too.
fn crowded(n: usize) -> SubscriptionTrie<usize, QoS> {
    let mut trie = SubscriptionTrie::new();
    trie.insert(&TopicFilter::new(TOPIC).unwrap(), 0, QoS::AtMostOnce);
    for i in 1..n {
        let f = match i % 4 {
            0 => format!("sensors/{i}/temp"),
            1 => format!("sensors/{i}/+"),
            2 => format!("+/{i}/temp"),
            _ => format!("devices/{i}/#"),
        };
        trie.insert(&TopicFilter::new(f).unwrap(), i, QoS::AtMostOnce);
    }
    trie
}

/// What the broker's routing does with the trie: collect the matches into a
/// reused vector. Collecting keeps the compiler from folding the walk into
/// a count, which would hide the per-subscriber cost.
fn route(
    trie: &SubscriptionTrie<usize, QoS>,
    topic: &TopicName,
    matches: &mut Vec<(usize, QoS)>,
) -> usize {
    matches.clear();
    trie.for_each_match(black_box(topic), |&k, &q| matches.push((k, q)));
    black_box(matches.len())
}

fn non_matching(c: &mut Criterion) {
    let mut g = c.benchmark_group("trie_total_subscriptions");
    g.throughput(Throughput::Elements(1));
    let topic = TopicName::new(TOPIC).unwrap();
    for n in [1usize, 10, 100, 1_000, 10_000, 100_000, 1_000_000] {
        let trie = crowded(n);
        assert_eq!(trie.len(), n);
        let mut matches = Vec::new();
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| route(&trie, &topic, &mut matches))
        });
        assert_eq!(matches, vec![(0, QoS::AtMostOnce)]);
    }
    g.finish();
}

fn matching(c: &mut Criterion) {
    let mut g = c.benchmark_group("trie_matching_subscribers");
    let topic = TopicName::new(TOPIC).unwrap();
    let exact = TopicFilter::new(TOPIC).unwrap();
    let plus = TopicFilter::new("sensors/+/temp").unwrap();
    for k in [1usize, 10, 100, 1_000, 10_000] {
        // Half on the exact filter, half on a wildcard one: both paths.
        let mut trie = SubscriptionTrie::new();
        for key in 0..k {
            let f = if key % 2 == 0 { &exact } else { &plus };
            trie.insert(f, key, QoS::AtMostOnce);
        }
        g.throughput(Throughput::Elements(k as u64));
        let mut matches = Vec::new();
        g.bench_with_input(BenchmarkId::from_parameter(k), &k, |b, _| {
            b.iter(|| route(&trie, &topic, &mut matches))
        });
        assert_eq!(matches.len(), k);
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_secs(2))
        .sample_size(50);
    targets = non_matching, matching
}
criterion_main!(benches);
