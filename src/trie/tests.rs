use super::*;
use crate::test_rng::XorShift;
use std::collections::BTreeMap;
use std::ops::ControlFlow;

fn name(s: &str) -> TopicName {
    TopicName::new(s).unwrap()
}

fn filter(s: &str) -> TopicFilter {
    TopicFilter::new(s).unwrap()
}

/// Every (key, value) the trie reports for `topic`, sorted.
fn matches<V: Copy + Ord>(trie: &SubscriptionTrie<u32, V>, topic: &str) -> Vec<(u32, V)> {
    let mut out = Vec::new();
    trie.for_each_match(&name(topic), |k, v| out.push((*k, *v)));
    out.sort();
    out
}

#[test]
fn for_each_match_counts_the_filters_that_matched() {
    let mut trie = SubscriptionTrie::new();
    assert_eq!(trie.for_each_match(&name("a/b"), |_, _| {}), 0);
    trie.insert(&filter("a/b"), 1u32, 0u8);
    trie.insert(&filter("a/b"), 2, 0);
    trie.insert(&filter("x/#"), 1, 0);
    assert_eq!(trie.for_each_match(&name("a/b"), |_, _| {}), 1);
    trie.insert(&filter("a/+"), 1, 1);
    trie.insert(&filter("#"), 3, 1);
    let mut seen = Vec::new();
    let filters = trie.for_each_match(&name("a/b"), |&k, _| seen.push(k));
    assert_eq!(filters, 3);
    seen.sort_unstable();
    assert_eq!(seen, vec![1, 1, 2, 3]);
    // A filter left without subscribers is not counted.
    trie.remove(&filter("a/+"), &1);
    assert_eq!(trie.for_each_match(&name("a/b"), |_, _| {}), 2);
}

#[test]
fn a_walk_started_from_inside_a_callback_sees_the_same_matches() {
    let mut trie = SubscriptionTrie::new();
    trie.insert(&filter("a/+/c"), 1u32, 0u8);
    trie.insert(&filter("a/#"), 2, 0);
    let mut inner = Vec::new();
    let outer = trie.for_each_match(&name("a/b/c"), |_, _| {
        inner.push(matches(&trie, "a/b/c"));
    });
    assert_eq!(outer, 2);
    assert_eq!(inner.len(), 2);
    for found in inner {
        assert_eq!(found, vec![(1, 0), (2, 0)]);
    }
    // And the kept stack still works after the nested walks.
    assert_eq!(matches(&trie, "a/x/c"), vec![(1, 0), (2, 0)]);
}

fn retained_matches<V: Copy + Ord>(trie: &RetainedTrie<V>, f: &str) -> Vec<V> {
    let mut out = Vec::new();
    trie.for_each_match(&filter(f), |v| out.push(*v));
    out.sort();
    out
}

/// The examples of sections 4.7.1 and 4.7.2, asked of both tries.
const SPEC: &[(&str, &str, bool)] = &[
    ("sport/tennis/player1/#", "sport/tennis/player1", true),
    (
        "sport/tennis/player1/#",
        "sport/tennis/player1/ranking",
        true,
    ),
    (
        "sport/tennis/player1/#",
        "sport/tennis/player1/score/wimbledon",
        true,
    ),
    ("sport/#", "sport", true),
    ("#", "sport/tennis/player1", true),
    ("#", "/", true),
    ("sport/tennis/+", "sport/tennis/player1", true),
    ("sport/tennis/+", "sport/tennis/player2", true),
    ("sport/tennis/+", "sport/tennis/player1/ranking", false),
    ("sport/+", "sport", false),
    ("sport/+", "sport/", true),
    ("+/tennis/#", "sport/tennis", true),
    ("+/+", "/finance", true),
    ("/+", "/finance", true),
    ("+", "/finance", false),
    ("a//b", "a//b", true),
    ("a/+/b", "a//b", true),
    ("a/b", "a//b", false),
    ("#", "$SYS/monitor/Clients", false),
    ("+/monitor/Clients", "$SYS/monitor/Clients", false),
    ("$SYS/#", "$SYS/monitor/Clients", true),
    ("$SYS/monitor/+", "$SYS/monitor/Clients", true),
    ("+", "$SYS", false),
    ("$SYS/#", "$SYS", true),
    ("a/+", "a/$x", true),
    ("a/#", "a/$x", true),
];

#[test]
fn subscription_trie_follows_the_spec_examples() {
    for &(f, t, expected) in SPEC {
        assert_eq!(filter(f).matches(&name(t)), expected, "reference {f} ~ {t}");
        let mut trie = SubscriptionTrie::new();
        trie.insert(&filter(f), 7, 1u8);
        let want = if expected { vec![(7, 1)] } else { vec![] };
        assert_eq!(matches(&trie, t), want, "{f} ~ {t}");
    }
}

#[test]
fn retained_trie_follows_the_spec_examples() {
    for &(f, t, expected) in SPEC {
        let mut trie = RetainedTrie::new();
        trie.insert(&name(t), 5u8);
        let want = if expected { vec![5] } else { vec![] };
        assert_eq!(retained_matches(&trie, f), want, "{f} ~ {t}");
    }
}

#[test]
fn every_matching_filter_reports_its_subscribers() {
    let mut trie = SubscriptionTrie::new();
    for (i, f) in ["a/b", "a/+", "a/#", "#", "+/b", "a/b/c", "b/#", "+/+/+"]
        .iter()
        .enumerate()
    {
        trie.insert(&filter(f), i as u32, 0u8);
    }
    let keys = |t| {
        matches(&trie, t)
            .into_iter()
            .map(|(k, _)| k)
            .collect::<Vec<_>>()
    };
    assert_eq!(keys("a/b"), [0, 1, 2, 3, 4]);
    assert_eq!(keys("a"), [2, 3]);
    assert_eq!(keys("a/b/c"), [2, 3, 5, 7]);
    assert_eq!(keys("$a/b"), Vec::<u32>::new());
}

#[test]
fn one_key_under_several_filters_is_reported_per_filter() {
    let mut trie = SubscriptionTrie::new();
    trie.insert(&filter("a/#"), 1, 0u8);
    trie.insert(&filter("a/+"), 1, 2);
    trie.insert(&filter("a/b"), 2, 1);
    assert_eq!(matches(&trie, "a/b"), [(1, 0), (1, 2), (2, 1)]);
}

#[test]
fn insert_replaces_and_returns_the_old_value() {
    let mut trie = SubscriptionTrie::new();
    assert_eq!(trie.insert(&filter("a/+"), 1, 0u8), None);
    assert_eq!(trie.insert(&filter("a/+"), 1, 2), Some(0));
    assert_eq!(trie.len(), 1);
    assert_eq!(matches(&trie, "a/x"), [(1, 2)]);

    let mut retained = RetainedTrie::new();
    assert_eq!(retained.insert(&name("a/b"), 1u8), None);
    assert_eq!(retained.insert(&name("a/b"), 2), Some(1));
    assert_eq!(retained.len(), 1);
    assert_eq!(retained.get(&name("a/b")), Some(&2));
}

#[test]
fn remove_prunes_back_to_an_empty_root() {
    let mut trie = SubscriptionTrie::new();
    let filters = [
        "a/b/c", "a/b", "a/+/c", "a/#", "#", "+", "/", "a//b", "$SYS/#",
    ];
    for f in filters {
        trie.insert(&filter(f), 1u32, 0u8);
        trie.insert(&filter(f), 2, 0);
    }
    assert_eq!(trie.len(), 2 * filters.len());
    assert!(trie.node_count() > 1);
    assert_eq!(trie.remove(&filter("a/b"), &3), None);
    assert_eq!(trie.remove(&filter("a/b/c/d"), &1), None);
    assert_eq!(trie.remove(&filter("x"), &1), None);
    for f in filters {
        assert_eq!(trie.remove(&filter(f), &1), Some(0), "{f}");
        assert_eq!(trie.remove(&filter(f), &1), None, "{f}");
    }
    // Removing an inner filter keeps the nodes below it alive.
    assert_eq!(matches(&trie, "a/b/c"), [(2, 0), (2, 0), (2, 0), (2, 0)]);
    for f in filters {
        assert_eq!(trie.remove(&filter(f), &2), Some(0), "{f}");
    }
    assert!(trie.is_empty());
    assert_eq!(trie.node_count(), 1);
    assert_eq!(matches(&trie, "a/b"), []);

    let mut retained = RetainedTrie::new();
    let topics = ["a/b/c", "a/b", "a", "/", "a//b", "$SYS/x"];
    for (i, t) in topics.iter().enumerate() {
        retained.insert(&name(t), i);
    }
    assert_eq!(retained.remove(&name("a/b/c/d")), None);
    assert_eq!(retained.remove(&name("a/x")), None);
    for (i, t) in topics.iter().enumerate() {
        assert_eq!(retained.remove(&name(t)), Some(i), "{t}");
        assert_eq!(retained.get(&name(t)), None, "{t}");
    }
    assert!(retained.is_empty());
    assert_eq!(retained.node_count(), 1);
}

#[test]
fn deepest_filters_and_topics_walk_without_recursion() {
    let deep = vec!["a"; crate::protocol::MAX_TOPIC_LEVELS].join("/");
    let mut trie = SubscriptionTrie::new();
    trie.insert(&filter(&deep), 1u32, 0u8);
    let plus = vec!["+"; crate::protocol::MAX_TOPIC_LEVELS].join("/");
    trie.insert(&filter(&plus), 2, 0);
    assert_eq!(matches(&trie, &deep), [(1, 0), (2, 0)]);
    assert_eq!(trie.remove(&filter(&deep), &1), Some(0));
    assert_eq!(trie.remove(&filter(&plus), &2), Some(0));
    assert_eq!(trie.node_count(), 1);

    let mut retained = RetainedTrie::new();
    retained.insert(&name(&deep), 1u8);
    assert_eq!(retained_matches(&retained, "#"), [1]);
    assert_eq!(retained_matches(&retained, &plus), [1]);
    assert_eq!(retained.remove(&name(&deep)), Some(1));
    assert_eq!(retained.node_count(), 1);
}

#[test]
fn many_subscribers_on_one_filter() {
    let mut trie = SubscriptionTrie::new();
    let f = filter("sensors/+/temp");
    for key in 0..10_000u32 {
        assert_eq!(trie.insert(&f, key, key * 2), None);
    }
    assert_eq!(trie.insert(&f, 1234, 0), Some(2468));
    assert_eq!(trie.len(), 10_000);
    let mut rng = XorShift(0x5384_5412_7B09_6493);
    let mut keys: Vec<u32> = (0..10_000).collect();
    // A Fisher-Yates shuffle, so removal hits every position of the vector.
    for i in (1..keys.len()).rev() {
        keys.swap(i, rng.below(i + 1));
    }
    for (n, key) in keys.iter().enumerate() {
        let want = if *key == 1234 { 0 } else { key * 2 };
        assert_eq!(trie.remove(&f, key), Some(want));
        assert_eq!(trie.remove(&f, key), None);
        if n % 1000 == 0 {
            let mut seen = 0;
            trie.for_each_match(&name("sensors/x/temp"), |k, v| {
                assert_eq!(*v, if *k == 1234 { 0 } else { k * 2 });
                seen += 1;
            });
            assert_eq!(seen, 10_000 - n - 1);
        }
    }
    assert_eq!(trie.node_count(), 1);
}

/// One of `from`, at random.
fn pick<'a>(rng: &mut XorShift, from: &[&'a str]) -> &'a str {
    from[rng.below(from.len())]
}

const LEVELS: &[&str] = &["a", "b", "$x", ""];

/// A topic of one to four levels; a single empty level would be the
/// empty topic, which is not a topic at all.
fn random_topic(rng: &mut XorShift) -> String {
    loop {
        let n = 1 + rng.below(4);
        let topic = (0..n)
            .map(|_| pick(rng, LEVELS))
            .collect::<Vec<_>>()
            .join("/");
        if !topic.is_empty() {
            return topic;
        }
    }
}

/// A filter of up to four levels and maybe a final `#`: the same levels
/// as the topics, with `+` as likely as any of them.
fn random_filter(rng: &mut XorShift) -> String {
    loop {
        let n = rng.below(5);
        let mut levels: Vec<&str> = (0..n)
            .map(|_| pick(rng, &["a", "b", "$x", "", "+", "+"]))
            .collect();
        if n == 0 || rng.below(3) == 0 {
            levels.push("#");
        }
        let filter = levels.join("/");
        if !filter.is_empty() {
            return filter;
        }
    }
}

#[test]
fn subscriptions_agree_with_the_reference_matcher() {
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let mut trie = SubscriptionTrie::new();
    // (filter, key) -> value; values are unique so each report names
    // exactly one subscription.
    let mut model: BTreeMap<(TopicFilter, u32), u64> = BTreeMap::new();
    for round in 0..10_000u64 {
        let f = filter(&random_filter(&mut rng));
        let key = rng.below(6) as u32;
        if rng.below(3) == 0 {
            let got = trie.remove(&f, &key);
            assert_eq!(got, model.remove(&(f.clone(), key)), "remove {f} {key}");
        } else {
            let got = trie.insert(&f, key, round);
            assert_eq!(
                got,
                model.insert((f.clone(), key), round),
                "insert {f} {key}"
            );
        }
        assert_eq!(trie.len(), model.len());

        let t = name(&random_topic(&mut rng));
        let mut got = Vec::new();
        trie.for_each_match(&t, |k, v| got.push((*k, *v)));
        got.sort();
        let mut want: Vec<(u32, u64)> = model
            .iter()
            .filter(|((f, _), _)| f.matches(&t))
            .map(|((_, k), v)| (*k, *v))
            .collect();
        want.sort();
        assert_eq!(got, want, "round {round}: topic {t}");
    }
    assert!(model.len() > 100, "the model stayed too small to test much");
    for (f, key) in std::mem::take(&mut model).into_keys() {
        assert!(trie.remove(&f, &key).is_some());
    }
    assert!(trie.is_empty());
    assert_eq!(trie.node_count(), 1);
}

#[test]
fn retained_messages_agree_with_the_reference_matcher() {
    let mut rng = XorShift(0x3C6E_F372_FE94_F82B);
    let mut trie = RetainedTrie::new();
    let mut model: BTreeMap<TopicName, u64> = BTreeMap::new();
    for round in 0..10_000u64 {
        let t = name(&random_topic(&mut rng));
        match rng.below(4) {
            0 => assert_eq!(trie.remove(&t), model.remove(&t), "remove {t}"),
            1 => assert_eq!(trie.get(&t), model.get(&t), "get {t}"),
            _ => assert_eq!(
                trie.insert(&t, round),
                model.insert(t.clone(), round),
                "insert {t}"
            ),
        }
        assert_eq!(trie.len(), model.len());

        let f = filter(&random_filter(&mut rng));
        let mut got = Vec::new();
        trie.for_each_match(&f, |v| got.push(*v));
        got.sort();
        let mut want: Vec<u64> = model
            .iter()
            .filter(|(t, _)| f.matches(t))
            .map(|(_, v)| *v)
            .collect();
        want.sort();
        assert_eq!(got, want, "round {round}: filter {f}");
    }
    assert!(model.len() > 50, "the model stayed too small to test much");
    for t in std::mem::take(&mut model).into_keys() {
        assert!(trie.remove(&t).is_some());
    }
    assert!(trie.is_empty());
    assert_eq!(trie.node_count(), 1);
}

#[test]
fn subscribers_index_agrees_with_a_hash_map() {
    let mut rng = XorShift(0xDAA6_6D2C_7DDF_743F);
    let mut subs = Subscribers::new();
    let mut model: HashMap<u32, u64> = HashMap::new();
    let mut indexed = false;
    for round in 0..50_000u64 {
        // Drift the population up and down across the index threshold.
        let phase = (round / 2_000) % 2 == 0;
        let key = rng.below(4 * INDEX_FROM) as u32;
        if (rng.below(10) < 6) == phase {
            assert_eq!(subs.insert(key, round), model.insert(key, round));
        } else {
            assert_eq!(subs.remove(&key), model.remove(&key));
        }
        indexed |= !subs.index.is_empty();
        assert_eq!(subs.entries.len(), model.len());
        if !subs.index.is_empty() {
            assert_eq!(subs.index.len(), subs.entries.len());
            for (i, (k, _)) in subs.entries.iter().enumerate() {
                assert_eq!(subs.index.get(k), Some(&i));
            }
        }
        let mut got: Vec<_> = subs.iter().copied().collect();
        got.sort();
        let mut want: Vec<_> = model.iter().map(|(k, v)| (*k, *v)).collect();
        want.sort();
        assert_eq!(got, want, "round {round}");
    }
    assert!(indexed, "the test never crossed the index threshold");
}

/// Every value a [`RetainedCursor`] offers for `f`, walked with a budget
/// of `budget` nodes a call.
fn cursor_matches(trie: &RetainedTrie<u64>, f: &str, budget: usize) -> Vec<u64> {
    let mut cursor = RetainedCursor::new(trie, filter(f));
    let mut out = Vec::new();
    loop {
        let mut left = budget;
        match cursor.resume(trie, &mut left, |v| {
            out.push(*v);
            ControlFlow::Continue(())
        }) {
            Walked::Done => break,
            Walked::Budget => assert_eq!(left, 0),
            Walked::Stopped => unreachable!("the callback never stops"),
        }
    }
    out.sort();
    out
}

#[test]
fn a_walk_one_node_at_a_time_follows_the_spec_examples() {
    for &(f, t, expected) in SPEC {
        let mut trie = RetainedTrie::new();
        trie.insert(&name(t), 5u64);
        let want = if expected { vec![5] } else { vec![] };
        assert_eq!(cursor_matches(&trie, f, 1), want, "{f} ~ {t}");
    }
}

#[test]
fn a_resumable_walk_agrees_with_the_reference_matcher_while_the_trie_changes() {
    let mut rng = XorShift(0x1F83_D9AB_5BE0_CD19);
    let mut trie = RetainedTrie::new();
    let mut model: BTreeMap<TopicName, u64> = BTreeMap::new();
    let mut round = 0u64;
    for _ in 0..300 {
        round += 1;
        let t = name(&random_topic(&mut rng));
        trie.insert(&t, round);
        model.insert(t, round);
    }
    for walk in 0..2_000 {
        let f = filter(&random_filter(&mut rng));
        // What the walk must offer: every value there at its start and
        // still there, unchanged, at its end. Anything else it offers must
        // be a match, and nothing twice.
        let at_start = model.clone();
        let mut cursor = RetainedCursor::new(&trie, f.clone());
        let mut offered = Vec::new();
        let mut stored_since = Vec::new();
        loop {
            let mut budget = 1 + rng.below(4);
            let stop_at = rng.below(3);
            let mut calls = 0;
            let walked = cursor.resume(&trie, &mut budget, |v| {
                calls += 1;
                if calls > stop_at && rng.below(2) == 0 {
                    return ControlFlow::Break(());
                }
                offered.push(*v);
                ControlFlow::Continue(())
            });
            if walked == Walked::Done {
                break;
            }
            // The trie changes between two parts of the walk.
            round += 1;
            let t = name(&random_topic(&mut rng));
            if rng.below(2) == 0 {
                assert_eq!(trie.remove(&t), model.remove(&t));
            } else {
                stored_since.push((t.clone(), round));
                assert_eq!(trie.insert(&t, round), model.insert(t, round));
            }
        }
        let mut sorted = offered.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(
            sorted.len(),
            offered.len(),
            "walk {walk}: {f} offered twice"
        );
        let matching: BTreeMap<u64, &TopicName> = at_start
            .iter()
            .chain(stored_since.iter().map(|(t, v)| (t, v)))
            .filter(|(t, _)| f.matches(t))
            .map(|(t, v)| (*v, t))
            .collect();
        for v in &offered {
            assert!(matching.contains_key(v), "walk {walk}: {f} offered {v}");
        }
        for (t, v) in &at_start {
            if f.matches(t) && model.get(t) == Some(v) {
                assert!(offered.contains(v), "walk {walk}: {f} missed {t}");
            }
        }
    }
    assert!(model.len() > 50, "the model stayed too small to test much");
}

#[test]
fn a_walk_holds_one_frame_per_level_however_wide_the_trie() {
    let mut trie = RetainedTrie::new();
    for i in 0..10_000u64 {
        trie.insert(&name(&format!("w/{i}/v")), i);
    }
    let mut cursor = RetainedCursor::new(&trie, filter("w/#"));
    let mut budget = 5_000;
    let mut seen = 0;
    assert_eq!(
        cursor.resume(&trie, &mut budget, |_| {
            seen += 1;
            ControlFlow::Continue(())
        }),
        Walked::Budget
    );
    assert!(seen > 1_000);
    assert!(cursor.depth() <= 4, "{} frames", cursor.depth());
    assert_eq!(cursor_matches(&trie, "w/+/v", 7).len(), 10_000);
}

#[test]
fn routing_visits_each_node_at_most_once_and_counts_them() {
    // Filters that part after a few levels and follow the topic to their
    // last level: the walk is as long as all of them together, and never
    // longer, however many `+` levels they share.
    let mut trie = SubscriptionTrie::new();
    for i in 0..64u32 {
        let mut levels = vec!["a".to_string()];
        for bit in 0..6 {
            levels.push(if i >> bit & 1 == 1 { "t" } else { "+" }.to_string());
        }
        levels.extend(std::iter::repeat_n("+".to_string(), 30));
        levels.push(format!("z{i}"));
        trie.insert(&filter(&levels.join("/")), i, 0u8);
    }
    let topic = format!("a{}/end", "/t".repeat(36));
    assert_eq!(trie.take_visited(), 0);
    assert_eq!(trie.for_each_match(&name(&topic), |_, _| {}), 0);
    let visited = trie.take_visited();
    assert!(visited <= trie.node_count(), "{visited} visits");
    assert!(visited > 64 * 30, "{visited} visits");
    assert_eq!(trie.take_visited(), 0, "the count restarts");
}
