//! `rulehost serve` against one `rulehost eval` over the same events: workers are real
//! `rulehost serve` processes, pointed at librdkafka's mock cluster (it lives in this test
//! process and listens on a loopback port) and at a `redis-server` started per test on a
//! free loopback port with `appendfsync always`. Each scenario checks that no alert is
//! lost, none is in the outbox twice, and the counts are exact.
//!
//! The events are the demo sample (in time order), keyed by user: each dedup key's events
//! are in one partition, as `serve` requires. One last event per partition, days later
//! and matching no rule, closes every window, so that each alert has its `alert_update`
//! with the final counts, as `eval` has them at the end of its input.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::Value;

use crate::util::{repo, rule_dir, rulehost, rules_tests};

const TOPIC: &str = "databricks-audit";
const SLOTS: u32 = 16;

/// A `redis-server` of this test: its own folder and port, append-only file fsynced on
/// every write.
struct Redis {
    child: Option<Child>,
    port: u16,
    /// Also listening with TLS on this port ([`Redis::start_tls`]).
    tls_port: Option<u16>,
    dir: tempfile::TempDir,
    /// `appendfsync`: `always` in the scenarios.
    fsync: &'static str,
    /// A node of a Redis Cluster ([`Cluster`]), with its bus on this port.
    cluster_port: Option<u16>,
}

impl Redis {
    /// Starts one; `None` (the test is skipped) when `redis-server` is not installed,
    /// except under `CI=true`, where that fails the test.
    fn start() -> Option<Redis> {
        Redis::start_with("always")
    }

    /// [`Redis::start`] with `appendfsync fsync`.
    fn start_with(fsync: &'static str) -> Option<Redis> {
        let found = Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "redis-server is required under CI=true (.ci/run installs it)"
            );
            eprintln!("skipped: redis-server is not installed (apt-get install redis-server)");
            return None;
        }
        let port = free_port();
        let mut redis = Redis {
            child: None,
            port,
            tls_port: None,
            dir: tempfile::tempdir().unwrap(),
            fsync,
            cluster_port: None,
        };
        redis.launch();
        Some(redis)
    }

    /// [`Redis::start`], also listening with TLS ([`Redis::tls_url`]), with a certificate
    /// for 127.0.0.1 that the `openssl` command makes (its file: [`Redis::certificate`]).
    fn start_tls() -> Option<Redis> {
        let found = Command::new("openssl")
            .arg("version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "openssl is required under CI=true (.ci/run installs it)"
            );
            eprintln!("skipped: openssl is not installed (apt-get install openssl)");
            return None;
        }
        let mut redis = Redis::start()?;
        let made = Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            ])
            .args([
                "-subj",
                "/CN=127.0.0.1",
                "-addext",
                "subjectAltName=IP:127.0.0.1",
            ])
            .arg("-keyout")
            .arg(redis.dir.path().join("key.pem"))
            .arg("-out")
            .arg(redis.certificate())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(made.success(), "openssl made no certificate");
        if let Some(mut child) = redis.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
        redis.tls_port = Some(free_port());
        redis.launch();
        Some(redis)
    }

    /// The certificate of [`Redis::start_tls`].
    fn certificate(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }

    /// `rediss://` on the TLS port.
    fn tls_url(&self) -> String {
        format!("rediss://127.0.0.1:{}/0", self.tls_port.unwrap())
    }

    fn launch(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--appendonly",
                "yes",
                "--appendfsync",
                self.fsync,
                "--save",
                "",
            ])
            .arg("--dir")
            .arg(self.dir.path())
            .args(self.cluster_port.iter().flat_map(|port| {
                [
                    "--cluster-enabled".to_owned(),
                    "yes".to_owned(),
                    "--cluster-port".to_owned(),
                    port.to_string(),
                    "--cluster-config-file".to_owned(),
                    "nodes.conf".to_owned(),
                    "--cluster-node-timeout".to_owned(),
                    "2000".to_owned(),
                ]
            }))
            .args(self.tls_port.iter().flat_map(|port| {
                let file = |name: &str| self.dir.path().join(name).into_os_string();
                [
                    "--tls-port".into(),
                    port.to_string().into(),
                    "--tls-cert-file".into(),
                    file("cert.pem"),
                    "--tls-key-file".into(),
                    file("key.pem"),
                    "--tls-auth-clients".into(),
                    "no".into(),
                ]
            }))
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(mut conn) = self.conn()
                && redis::cmd("PING").query::<String>(&mut conn).is_ok()
            {
                return;
            }
            assert!(Instant::now() < deadline, "redis-server did not answer");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the server (SIGKILL: only what `appendfsync always` wrote survives) and
    /// starts it again on the same port and files.
    fn restart(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
        self.launch();
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    fn conn(&self) -> redis::RedisResult<redis::Connection> {
        redis::Client::open(self.url())?.get_connection_with_timeout(Duration::from_secs(1))
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Where a test's workers keep their state: one server ([`Redis`]) or a Redis Cluster
/// ([`Cluster`]).
trait StateServer {
    /// `serve --state`.
    fn state_url(&self) -> String;
    /// A connection that reaches every key of the state.
    fn state_conn(&self) -> redis::RedisResult<Box<dyn redis::ConnectionLike>>;
}

impl StateServer for Redis {
    fn state_url(&self) -> String {
        self.url()
    }

    fn state_conn(&self) -> redis::RedisResult<Box<dyn redis::ConnectionLike>> {
        Ok(Box::new(self.conn()?))
    }
}

/// A Redis Cluster of three primaries (no replicas) on loopback ports, each a
/// [`Redis`] with its own files; the 16,384 slots split evenly between them.
struct Cluster {
    nodes: Vec<Redis>,
}

impl Cluster {
    /// Starts one; `None` as [`Redis::start`].
    fn start() -> Option<Cluster> {
        let mut nodes = Vec::new();
        for _ in 0..3 {
            let mut node = Redis::start()?;
            if let Some(mut child) = node.child.take() {
                child.kill().unwrap();
                child.wait().unwrap();
            }
            node.cluster_port = Some(free_port());
            node.launch();
            nodes.push(node);
        }
        let cmd = |node: &Redis, args: &[String]| -> String {
            let mut cmd = redis::cmd(&args[0]);
            for arg in &args[1..] {
                cmd.arg(arg);
            }
            let reply: redis::Value = cmd.query(&mut node.conn().unwrap()).unwrap();
            format!("{reply:?}")
        };
        let words = |text: &str| text.split(' ').map(str::to_owned).collect::<Vec<_>>();
        for (i, node) in nodes.iter().enumerate() {
            let (from, to) = (i * 16384 / 3, (i + 1) * 16384 / 3 - 1);
            cmd(node, &words(&format!("CLUSTER ADDSLOTSRANGE {from} {to}")));
        }
        for node in &nodes[1..] {
            let meet = format!(
                "CLUSTER MEET 127.0.0.1 {} {}",
                node.port,
                node.cluster_port.unwrap()
            );
            cmd(&nodes[0], &words(&meet));
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while !nodes.iter().all(|node| {
            let info = cmd(node, &words("CLUSTER INFO"));
            info.contains("cluster_state:ok") && info.contains("cluster_known_nodes:3")
        }) {
            assert!(Instant::now() < deadline, "the cluster did not form");
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(Cluster { nodes })
    }
}

impl StateServer for Cluster {
    fn state_url(&self) -> String {
        format!("redis+cluster://127.0.0.1:{}", self.nodes[0].port)
    }

    fn state_conn(&self) -> redis::RedisResult<Box<dyn redis::ConnectionLike>> {
        let seeds: Vec<String> = self.nodes.iter().map(Redis::url).collect();
        let client = redis::cluster::ClusterClient::new(seeds)?;
        Ok(Box::new(client.get_connection()?))
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The mock cluster and the events on it.
struct Kafka {
    cluster: MockCluster<'static, DefaultProducerContext>,
    partitions: i32,
}

impl Kafka {
    fn new(partitions: i32) -> Kafka {
        let cluster = MockCluster::new(1).unwrap();
        cluster.create_topic(TOPIC, partitions, 1).unwrap();
        Kafka {
            cluster,
            partitions,
        }
    }

    fn brokers(&self) -> String {
        self.cluster.bootstrap_servers()
    }

    /// Produces `events` (partition, line), in order, and waits for the acks.
    fn produce(&self, events: &[(i32, String)]) {
        self.produce_with(events, &[]);
    }

    /// [`Kafka::produce`] with more producer settings.
    fn produce_with(&self, events: &[(i32, String)], settings: &[(&str, &str)]) {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", self.brokers());
        for (key, value) in settings {
            config.set(*key, *value);
        }
        let producer: ThreadedProducer<DefaultProducerContext> = config.create().unwrap();
        for (partition, line) in events {
            let mut record: BaseRecord<'_, (), String> =
                BaseRecord::to(TOPIC).partition(*partition).payload(line);
            // A full queue waits for the broker's acks (the producer's thread polls).
            while let Err((e, back)) = producer.send(record) {
                assert_eq!(
                    e,
                    rdkafka::error::KafkaError::MessageProduction(
                        rdkafka::types::RDKafkaErrorCode::QueueFull
                    )
                );
                record = back;
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        producer.flush(Duration::from_secs(120)).unwrap();
    }

    /// The first offset the broker still holds, per partition.
    fn low_watermarks(&self) -> Vec<i64> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", self.brokers())
            .create()
            .unwrap();
        (0..self.partitions)
            .map(|p| {
                consumer
                    .fetch_watermarks(TOPIC, p, Duration::from_secs(10))
                    .unwrap()
                    .0
            })
            .collect()
    }

    /// The group's committed offset per partition (`-1`: none yet).
    fn committed(&self, group: &str) -> Vec<i64> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", self.brokers())
            .set("group.id", group)
            .create()
            .unwrap();
        let mut list = TopicPartitionList::new();
        for p in 0..self.partitions {
            list.add_partition(TOPIC, p);
        }
        let Ok(committed) = consumer.committed_offsets(list, Duration::from_secs(5)) else {
            return vec![-1; self.partitions as usize];
        };
        (0..self.partitions)
            .map(
                |p| match committed.find_partition(TOPIC, p).map(|e| e.offset()) {
                    Some(Offset::Offset(o)) => o,
                    _ => -1,
                },
            )
            .collect()
    }
}

/// The demo sample keyed by user into `partitions`, then one closing event per partition.
fn events(partitions: i32) -> Vec<(i32, String)> {
    events_of(
        &repo().join("demo/databricks-audit-sample.jsonl"),
        partitions,
    )
}

/// The events of `path` keyed by user into `partitions`, then one closing event per
/// partition.
fn events_of(path: &Path, partitions: i32) -> Vec<(i32, String)> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut out = Vec::new();
    let mut last = 0;
    for line in text.lines() {
        let event: Value = serde_json::from_str(line).unwrap();
        last = last.max(event["timestamp"].as_i64().unwrap());
        let user = event["userIdentity"]["email"].as_str().unwrap_or_default();
        let partition = user.bytes().map(u32::from).sum::<u32>() % partitions as u32;
        out.push((partition as i32, line.to_owned()));
    }
    for p in 0..partitions {
        let close = serde_json::json!({"timestamp": last + 3 * 86_400_000, "actionName": "close"});
        out.push((p, close.to_string()));
    }
    out
}

/// `rulehost eval` over the same events, in the same order: its records.
fn eval_records(events: &[(i32, String)]) -> Vec<Value> {
    eval_run(&rules_tests(), events, &[], 0)
}

/// `rulehost eval --rules RULES EXTRA...` over the same events, in the same order: its
/// records; it must exit with `code`.
fn eval_run(rules: &Path, events: &[(i32, String)], extra: &[&str], code: i32) -> Vec<Value> {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("events.jsonl");
    let lines: Vec<&str> = events.iter().map(|(_, l)| l.as_str()).collect();
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let out = rulehost()
        .args(["eval", "--threads", "1", "--rules"])
        .arg(rules)
        .args(extra)
        .arg(&input)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(code),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    records(&String::from_utf8(out.stdout).unwrap())
}

fn records(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A `rulehost serve` process.
struct Worker {
    child: Child,
    log: PathBuf,
}

impl Worker {
    fn start(
        kafka: &Kafka,
        redis: &dyn StateServer,
        group: &str,
        out: &Path,
        extra: &[&str],
    ) -> Worker {
        Worker::start_on(&rules_tests(), kafka, redis, group, out, extra)
    }

    /// [`Worker::start`] with the rules of `rules`.
    fn start_on(
        rules: &Path,
        kafka: &Kafka,
        redis: &dyn StateServer,
        group: &str,
        out: &Path,
        extra: &[&str],
    ) -> Worker {
        Worker::start_env(rules, kafka, redis, group, out, extra, &[])
    }

    /// [`Worker::start_on`] with more environment variables.
    fn start_env(
        rules: &Path,
        kafka: &Kafka,
        redis: &dyn StateServer,
        group: &str,
        out: &Path,
        extra: &[&str],
        env: &[(&str, &Path)],
    ) -> Worker {
        let log = out.with_extension("log");
        let url = redis.state_url();
        let child = rulehost()
            .envs(env.iter().copied())
            .args(["serve", "--rules"])
            .arg(rules)
            .args(["--kafka-brokers", &kafka.brokers(), "--topic", TOPIC])
            .args(["--group", group])
            .arg("-o")
            .arg(out)
            .args(["--linger-ms", "20"])
            .args(
                [
                    ["--state", url.as_str()],
                    ["--outbox-claim-ms", "1000"],
                    ["--watch-seconds", "0"],
                    ["--batch-size", "200"],
                ]
                .iter()
                .filter(|[flag, _]| !extra.contains(flag))
                .flatten(),
            )
            .args(extra)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Worker { child, log }
    }

    /// SIGTERM: it must drain, commit and exit 0.
    fn stop(mut self) {
        let pid = self.child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(
                    status.success(),
                    "serve exited with {status}: {}",
                    self.log()
                );
                return;
            }
            assert!(
                Instant::now() < deadline,
                "serve did not stop: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL: no chance to commit or acknowledge anything.
    fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Its log; a worker that exited by itself fails the test at once.
    /// Sends `signal` (`-HUP`, ...).
    fn signal(&self, signal: &str) {
        let pid = self.child.id().to_string();
        assert!(
            Command::new("kill")
                .args([signal, &pid])
                .status()
                .unwrap()
                .success()
        );
    }

    /// Waits until its log holds `text` `times` times.
    fn wait_log(&self, text: &str, times: usize) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while self.log().matches(text).count() < times {
            assert!(
                Instant::now() < deadline,
                "no `{text}` in the log: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let pid = self.child.id();
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // Field 3 of `stat` is the state; `Z`: exited, not yet waited for.
        let exited = state
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z'));
        assert!(!exited, "serve exited by itself: {log}");
        log
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The outbox entries of every slot, in order: (kind, alert id).
fn outbox(redis: &dyn StateServer, group: &str) -> Vec<(String, String)> {
    let mut conn = redis.state_conn().unwrap();
    let mut out = Vec::new();
    for slot in 0..SLOTS {
        let stream = format!("rulehost:{{{group}:{slot}}}:outbox");
        let entries: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
            .arg(&stream)
            .arg("-")
            .arg("+")
            .query(&mut *conn)
            .unwrap();
        for entry in entries.ids {
            let kind: String = entry.get("k").unwrap();
            let id: String = entry.get("a").unwrap_or_default();
            out.push((kind, id));
        }
    }
    out
}

/// Whether every outbox entry was delivered and acknowledged.
fn outbox_delivered(redis: &dyn StateServer, group: &str, slots: u32) -> bool {
    let Ok(mut conn) = redis.state_conn() else {
        return false;
    };
    (0..slots).all(|slot| {
        let stream = format!("rulehost:{{{group}:{slot}}}:outbox");
        let groups: redis::RedisResult<redis::streams::StreamInfoGroupsReply> = redis::cmd("XINFO")
            .arg("GROUPS")
            .arg(&stream)
            .query(&mut *conn);
        let Ok(groups) = groups else {
            return false;
        };
        let last: redis::RedisResult<redis::streams::StreamRangeReply> = redis::cmd("XREVRANGE")
            .arg(&stream)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query(&mut *conn);
        let last = last.ok().and_then(|r| r.ids.first().map(|e| e.id.clone()));
        groups.groups.iter().any(|g| {
            g.name == "rulehost-outbox"
                && g.pending == 0
                && last.as_ref().is_none_or(|id| *id == g.last_delivered_id)
        })
    })
}

/// Waits until the group has committed every message and the outbox is delivered.
fn wait_done(
    kafka: &Kafka,
    redis: &dyn StateServer,
    group: &str,
    events: &[(i32, String)],
    workers: &[&Worker],
) {
    wait_done_in(kafka, redis, group, group, SLOTS, events, workers);
}

/// [`wait_done`] for a group whose state namespace is `namespace`, on `slots` hash slots.
fn wait_done_in(
    kafka: &Kafka,
    redis: &dyn StateServer,
    group: &str,
    namespace: &str,
    slots: u32,
    events: &[(i32, String)],
    workers: &[&Worker],
) {
    let mut ends = vec![0i64; kafka.partitions as usize];
    for (p, _) in events {
        ends[*p as usize] += 1;
    }
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        if kafka.committed(group) == ends && outbox_delivered(redis, namespace, slots) {
            return;
        }
        let logs: Vec<String> = workers.iter().map(|w| w.log()).collect();
        assert!(
            Instant::now() < deadline,
            "not done: committed {:?} of {ends:?}; logs:\n{}",
            kafka.committed(group),
            logs.join("\n---\n")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits until the group has committed at least `n` messages in all.
fn wait_committed(kafka: &Kafka, group: &str, n: i64, workers: &[&Worker]) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while kafka
        .committed(group)
        .iter()
        .map(|c| c.max(&0))
        .sum::<i64>()
        < n
    {
        let logs: Vec<String> = workers.iter().map(|w| w.log()).collect();
        assert!(
            Instant::now() < deadline,
            "fewer than {n} messages committed ({:?}); logs:\n{}",
            kafka.committed(group),
            logs.join("\n---\n")
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Compares what the workers delivered (files) and what the outbox holds with `eval`'s
/// records: every alert once in the outbox with one update, and the last record of each
/// alert (its `alert_update`) equal to `eval`'s alert, counts included.
fn check(eval: &[Value], redis: &dyn StateServer, group: &str, outputs: &[PathBuf]) {
    let mut outbox_counts: BTreeMap<(String, String), u32> = BTreeMap::new();
    for entry in outbox(redis, group) {
        *outbox_counts.entry(entry).or_default() += 1;
    }
    let mut delivered: HashMap<String, Value> = HashMap::new();
    for path in outputs {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        for record in records(&text) {
            let id = record["alert_id"].as_str().unwrap().to_owned();
            let is_update = record["kind"] == "alert_update";
            match delivered.get(&id) {
                Some(have) if have["kind"] == "alert_update" && !is_update => {}
                _ => {
                    delivered.insert(id, record);
                }
            }
        }
    }
    let want: std::collections::BTreeSet<&str> = eval
        .iter()
        .map(|r| r["alert_id"].as_str().unwrap())
        .collect();
    let missing: Vec<&Value> = eval
        .iter()
        .filter(|r| !delivered.contains_key(r["alert_id"].as_str().unwrap()))
        .take(3)
        .collect();
    let extra: Vec<&Value> = delivered
        .iter()
        .filter(|(id, _)| !want.contains(id.as_str()))
        .map(|(_, r)| r)
        .take(3)
        .collect();
    assert_eq!(
        delivered.len(),
        eval.len(),
        "alerts delivered ({} outbox entries, {:?} lines delivered); missing: {missing:#?}\nextra: {extra:#?}",
        outbox_counts.values().sum::<u32>(),
        outputs
            .iter()
            .map(|p| std::fs::read_to_string(p)
                .unwrap_or_default()
                .lines()
                .count())
            .collect::<Vec<_>>()
    );
    for want in eval {
        let id = want["alert_id"].as_str().unwrap();
        // `alert` or `rule_error`.
        let kind = want["kind"].as_str().unwrap().to_owned();
        assert_eq!(
            outbox_counts.get(&(kind, id.to_owned())),
            Some(&1),
            "alert {id} once in the outbox"
        );
        assert_eq!(
            outbox_counts.get(&("alert_update".to_owned(), id.to_owned())),
            Some(&1),
            "alert {id}'s update once in the outbox"
        );
        let got = delivered
            .get(id)
            .unwrap_or_else(|| panic!("alert {id} delivered"));
        assert_eq!(got["kind"], "alert_update");
        for field in [
            "rule_id",
            "severity",
            "title",
            "dedup",
            "first_event_time",
            "last_event_time",
            "window_start",
            "window_end",
            "created_at",
            "event_count",
            "unique_count",
            "threshold",
            "alert_context",
            "description",
            "runbook",
            "reference",
            "tags",
            "reports",
            "destinations",
            "suppressed",
            "error",
        ] {
            assert_eq!(got[field], want[field], "alert {id}: `{field}`");
        }
    }
    let alerts = outbox_counts
        .keys()
        .filter(|(k, _)| k == "alert" || k == "rule_error")
        .count();
    assert_eq!(alerts, eval.len(), "outbox alerts and rule errors");
}

/// Per partition (`TOPIC/P`), the offset of its last event in `events`, as JSON.
fn last_offsets(events: &[(i32, String)]) -> Value {
    let mut last = BTreeMap::new();
    for (p, _) in events {
        *last.entry(format!("{TOPIC}/{p}")).or_insert(-1i64) += 1;
    }
    serde_json::to_value(last).unwrap()
}

/// What `rulehost state URL --state-namespace NAMESPACE --format json` prints.
fn state_json(url: &str, namespace: &str) -> Value {
    let out = rulehost()
        .arg("state")
        .arg(url)
        .args(["--state-namespace", namespace, "--format", "json"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Copies the files of `from` into `to`, folders included.
fn copy_folder(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_folder(&path, &target);
        } else {
            std::fs::copy(&path, target).unwrap();
        }
    }
}

/// One HTTP/1.0 GET: the status line and the body.
fn http_get(addr: &str, path: &str) -> (String, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    let request = format!("GET {path} HTTP/1.0\r\n\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap().to_owned(), body.to_owned())
}

/// The value of the metric line that starts with `name` (labels included).
fn metric(page: &str, name: &str) -> Option<f64> {
    page.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// Every record of the alerts topic: (key, record).
fn alerts_topic(kafka: &Kafka, topic: &str) -> Vec<(String, Value)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", kafka.brokers())
        .set("group.id", "alerts-reader")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    let mut list = TopicPartitionList::new();
    list.add_partition_offset(topic, 0, Offset::Beginning)
        .unwrap();
    consumer.assign(&list).unwrap();
    let mut out = Vec::new();
    let mut quiet_since = Instant::now();
    let quiet = |out: &Vec<_>| Duration::from_secs(if out.is_empty() { 20 } else { 2 });
    while quiet_since.elapsed() < quiet(&out) {
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            use rdkafka::message::Message;
            let message = message.unwrap();
            let key = String::from_utf8(message.key().unwrap().to_vec()).unwrap();
            let record = serde_json::from_slice(message.payload().unwrap()).unwrap();
            out.push((key, record));
            quiet_since = Instant::now();
        }
    }
    out
}

#[test]
fn one_worker_gives_evals_alerts() {
    let Some(redis) = Redis::start() else { return };
    let kafka = Kafka::new(3);
    kafka.cluster.create_topic("rulehost-alerts", 1, 1).unwrap();
    let events = events(3);
    let eval = eval_records(&events);
    assert!(eval.len() >= 10, "the sample alerts: {}", eval.len());
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("w1.jsonl");
    kafka.produce(&events);
    let addr = format!("127.0.0.1:{}", free_port());
    let worker = Worker::start(
        &kafka,
        &redis,
        "g1",
        &out,
        &["--metrics-addr", &addr, "--alerts-topic", "rulehost-alerts"],
    );
    wait_done(&kafka, &redis, "g1", &events, &[&worker]);

    // Liveness and readiness, and the counts as Prometheus reads them.
    assert_eq!(http_get(&addr, "/healthz").0, "HTTP/1.0 200 OK");
    let deadline = Instant::now() + Duration::from_secs(10);
    let page = loop {
        let (status, page) = http_get(&addr, "/metrics");
        assert_eq!(status, "HTTP/1.0 200 OK");
        // The lag comes from librdkafka's statistics, every second.
        if metric(&page, "rulehost_events_total") == Some(events.len() as f64)
            && metric(&page, "rulehost_consumer_lag{partition=\"0\"}") == Some(0.0)
        {
            break page;
        }
        assert!(Instant::now() < deadline, "events not counted: {page}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let alerts: f64 = page
        .lines()
        .filter(|l| l.starts_with("rulehost_alerts_total{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum();
    assert_eq!(alerts, eval.len() as f64, "{page}");
    assert_eq!(metric(&page, "rulehost_bad_lines_total"), Some(0.0));
    for name in [
        "rulehost_eval_seconds_count",
        "rulehost_redis_round_trips_total",
    ] {
        assert!(metric(&page, name).is_some(), "no `{name}`: {page}");
    }
    worker.stop();
    check(&eval, &redis, "g1", std::slice::from_ref(&out));

    // The alerts topic holds what the file holds, each record keyed by its `alert_id`.
    let topic = alerts_topic(&kafka, "rulehost-alerts");
    let file = records(&std::fs::read_to_string(&out).unwrap());
    assert_eq!(topic.len(), file.len());
    for ((key, record), want) in topic.iter().zip(&file) {
        assert_eq!(key, want["alert_id"].as_str().unwrap());
        assert_eq!(record, want);
    }
}

#[test]
fn misbehaving_rules_are_quarantined_with_evals_rule_errors() {
    // A rule whose `evaluate-batch` drops every match (caught by the check of the first
    // batch), and one that loops on every event (quarantined after 3 timeouts): `eval`
    // writes a `rule_error` record for each; so must `serve`, through the outbox.
    let Some(redis) = Redis::start() else { return };
    let kafka = Kafka::new(1);
    let rules = rule_dir(
        &[],
        &[
            ("split.yml", crate::paths::SPEC),
            ("hostile.yml", crate::sandbox::HOSTILE_SPEC),
        ],
    );
    const T0: i64 = 1_704_067_200_000;
    let event = |i: i64| {
        let user = format!("u{i}");
        serde_json::json!({"timestamp": T0 + i * 1000, "match": true, "user": user,
            "batch": "lie", "hostile": "loop"})
    };
    let mut events: Vec<(i32, String)> = (0..50).map(|i| (0, event(i).to_string())).collect();
    let close = serde_json::json!({"timestamp": T0 + 3 * 86_400_000, "actionName": "close"});
    events.push((0, close.to_string()));
    let limits = ["--timeout-ms", "20", "--quarantine-after", "3"];
    let eval = eval_run(rules.path(), &events, &limits, 2);
    let mut kinds: Vec<(&str, &str)> = eval
        .iter()
        .map(|r| (r["kind"].as_str().unwrap(), r["dedup"].as_str().unwrap()))
        .collect();
    kinds.sort_unstable();
    assert_eq!(
        kinds,
        [
            ("alert", "u0"),
            ("rule_error", "PathMismatch"),
            ("rule_error", "Timeout")
        ],
        "{eval:#?}"
    );

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("w.jsonl");
    kafka.produce(&events);
    let addr = format!("127.0.0.1:{}", free_port());
    let mut extra = limits.to_vec();
    extra.extend(["--metrics-addr", &addr]);
    let worker = Worker::start_on(rules.path(), &kafka, &redis, "ge", &out, &extra);
    wait_done(&kafka, &redis, "ge", &events, &[&worker]);
    worker.wait_log(
        &format!(
            "rule `Test.SplitPaths` quarantined at `{TOPIC}/0:0` because its `evaluate-batch` \
             results disagree with one call per function: it is not called until the rules \
             are loaded again"
        ),
        1,
    );
    worker.wait_log(
        &format!(
            "rule `Test.Hostile` quarantined at `{TOPIC}/0:2` after 3 calls timed out, hit a \
             limit or trapped"
        ),
        1,
    );
    // Counted per rule: each rule error record once, and not as an alert.
    let want = [
        (
            "rulehost_rule_error_records_total{rule=\"Test.SplitPaths\"}",
            1.0,
        ),
        (
            "rulehost_rule_error_records_total{rule=\"Test.Hostile\"}",
            1.0,
        ),
        ("rulehost_alerts_total{rule=\"Test.SplitPaths\"}", 1.0),
        ("rulehost_alerts_total{rule=\"Test.Hostile\"}", 0.0),
        (
            "rulehost_path_mismatches_total{rule=\"Test.SplitPaths\"}",
            1.0,
        ),
        ("rulehost_rule_errors_total{rule=\"Test.Hostile\"}", 3.0),
        ("rulehost_quarantined{rule=\"Test.SplitPaths\"}", 1.0),
        ("rulehost_quarantined{rule=\"Test.Hostile\"}", 1.0),
    ];
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, page) = http_get(&addr, "/metrics");
        if want.iter().all(|(name, v)| metric(&page, name) == Some(*v)) {
            break;
        }
        assert!(Instant::now() < deadline, "{want:?} in {page}");
        std::thread::sleep(Duration::from_millis(100));
    }
    worker.stop();
    check(&eval, &redis, "ge", &[out]);
}

#[test]
fn a_poisoned_timestamp_loses_and_corrupts_no_alert() {
    // Two events with absurd times, matching no rule: one a month ahead of its partition
    // (the next event of the partition shows it was a lone outlier), one in the year 2200
    // (past this machine's clock). Without the guard either would move its partition's
    // clock and close its windows early, splitting alerts and their counts.
    let Some(redis) = Redis::start() else { return };
    let kafka = Kafka::new(3);
    let mut events = events(3);
    let last = events
        .iter()
        .filter_map(|(_, l)| serde_json::from_str::<Value>(l).ok()?["timestamp"].as_i64())
        .max()
        .unwrap();
    let poison = |t: i64| serde_json::json!({"timestamp": t, "actionName": "poison"}).to_string();
    let mut offsets = Vec::new();
    for (partition, time) in [(1, last + 30 * 86_400_000), (2, 7_258_118_400_000)] {
        // After the middle event of the partition.
        let of_partition: Vec<usize> = (0..events.len())
            .filter(|&i| events[i].0 == partition)
            .collect();
        let middle = of_partition.len() / 2;
        events.insert(of_partition[middle] + 1, (partition, poison(time)));
        offsets.push((partition, middle + 1));
    }
    let eval = eval_records(&events);
    let dir = tempfile::tempdir().unwrap();
    kafka.produce(&events);

    // Batches of one message: the first poison is the last event of its batch, held
    // (uncommitted) until the partition's next batch; then batches of up to 200.
    for (group, batch) in [("gp1", "1"), ("gp200", "200")] {
        let out = dir.path().join(format!("{group}.jsonl"));
        let worker = Worker::start(&kafka, &redis, group, &out, &["--batch-size", batch]);
        wait_done(&kafka, &redis, group, &events, &[&worker]);
        for (partition, offset) in &offsets {
            worker.wait_log(&format!("`{TOPIC}/{partition}:{offset}`: event time "), 1);
        }
        worker.wait_log("is more than 1h ahead of the event-time clock", 2);
        worker.stop();
        check(&eval, &redis, group, &[out]);
    }

    // The same without the guard: windows close early, alerts are split and their counts
    // wrong (so the check above can tell).
    let out = dir.path().join("off.jsonl");
    let extra = ["--max-clock-skew", "0"];
    let worker = Worker::start(&kafka, &redis, "gp-off", &out, &extra);
    wait_done(&kafka, &redis, "gp-off", &events, &[&worker]);
    worker.stop();
    // Each alert's last record: (alert id, events counted).
    let finals = |records: &[Value]| -> BTreeMap<String, Value> {
        let id = |r: &Value| r["alert_id"].as_str().unwrap().to_owned();
        records
            .iter()
            .map(|r| (id(r), r["event_count"].clone()))
            .collect()
    };
    let off = finals(&records(&std::fs::read_to_string(&out).unwrap()));
    let want = finals(&eval);
    // One of the 13 alerts when this was written.
    assert_ne!(off, want, "without the guard no alert changed");
}

/// A worker that takes a partition over starts its event-time clock where the state kept
/// it: a poisoned timestamp that is the first event it reads of the partition is held and
/// judged as the last owner would have judged it, and alerts stay `eval`'s.
#[test]
fn a_restarted_worker_guards_its_partitions_clock_from_the_state() {
    let Some(redis) = Redis::start() else { return };
    let kafka = Kafka::new(3);
    let mut events = events(3);
    let time = |line: &str| serde_json::from_str::<Value>(line).ok()?["timestamp"].as_i64();
    let last = events.iter().filter_map(|(_, l)| time(l)).max().unwrap();
    // A month ahead, after the middle event of partition 1: the first event the second
    // worker reads of it.
    let of_partition: Vec<usize> = (0..events.len()).filter(|&i| events[i].0 == 1).collect();
    let middle = of_partition.len() / 2;
    let at = of_partition[middle] + 1;
    let poison = serde_json::json!({"timestamp": last + 30 * 86_400_000, "actionName": "poison"});
    events.insert(at, (1, poison.to_string()));
    let eval = eval_records(&events);
    let (head, rest) = events.split_at(at);
    let dir = tempfile::tempdir().unwrap();
    let (first, second) = (dir.path().join("a.jsonl"), dir.path().join("b.jsonl"));

    kafka.produce(head);
    let worker = Worker::start(&kafka, &redis, "gr", &first, &[]);
    wait_done(&kafka, &redis, "gr", head, &[&worker]);
    worker.stop();
    // The state keeps each partition's clock: its newest event time.
    let json = state_json(&redis.url(), "gr");
    let mut newest: BTreeMap<String, i64> = BTreeMap::new();
    for (p, line) in head {
        let t = newest.entry(format!("{TOPIC}/{p}")).or_insert(i64::MIN);
        *t = (*t).max(time(line).unwrap());
    }
    assert_eq!(
        json["clocks"],
        serde_json::to_value(&newest).unwrap(),
        "{json:#}"
    );

    kafka.produce(rest);
    let worker = Worker::start(&kafka, &redis, "gr", &second, &[]);
    wait_done(&kafka, &redis, "gr", &events, &[&worker]);
    worker.wait_log(&format!("`{TOPIC}/1:{}`: event time ", middle + 1), 1);
    worker.wait_log("is more than 1h ahead of the event-time clock", 1);
    worker.stop();
    check(&eval, &redis, "gr", &[first, second]);
}

#[test]
fn the_state_over_tls_gives_evals_alerts() {
    let Some(redis) = Redis::start_tls() else {
        return;
    };
    let kafka = Kafka::new(3);
    let events = events(3);
    let eval = eval_records(&events);
    let dir = tempfile::tempdir().unwrap();
    kafka.produce(&events);
    let url = redis.tls_url();
    let extra = ["--state", url.as_str()];

    // A server whose certificate the worker does not trust is refused, and said why.
    let out = dir.path().join("untrusted.jsonl");
    let worker = Worker::start_on(&rules_tests(), &kafka, &redis, "gt", &out, &extra);
    worker.wait_log("certificate verify failed", 1);
    worker.kill();

    // Trusted (OpenSSL's `SSL_CERT_FILE`): the state, the outbox and the forwarder go
    // through TLS.
    let out = dir.path().join("w.jsonl");
    let env = [("SSL_CERT_FILE", redis.certificate())];
    let env: Vec<(&str, &Path)> = env.iter().map(|(k, v)| (*k, v.as_path())).collect();
    let worker = Worker::start_env(&rules_tests(), &kafka, &redis, "gt", &out, &extra, &env);
    wait_done(&kafka, &redis, "gt", &events, &[&worker]);
    worker.stop();
    check(&eval, &redis, "gt", &[out]);
}

#[test]
fn rulehost_state_shows_serves_state_in_redis() {
    let Some(redis) = Redis::start() else { return };
    let kafka = Kafka::new(3);
    let events = events(3);
    // The closing events (one per partition) come last: before them, windows are open.
    let (head, tail) = events.split_at(events.len() - 3);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("w.jsonl");
    kafka.produce(head);
    let worker = Worker::start(&kafka, &redis, "gv", &out, &[]);
    wait_done(&kafka, &redis, "gv", head, &[&worker]);
    let state = |format: &str| {
        let out = rulehost()
            .arg("state")
            .arg(redis.url())
            .args(["--state-namespace", "gv", "--format", format])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        String::from_utf8(out.stdout).unwrap()
    };
    let sum = |json: &Value, field: &str| -> u64 {
        let rules = json["rules"].as_array().unwrap();
        rules.iter().map(|r| r[field].as_u64().unwrap()).sum()
    };

    let json: Value = serde_json::from_str(&state("json")).unwrap();
    assert_eq!(json["applied"], last_offsets(head), "{json:#}");
    let entries = outbox(&redis, "gv");
    assert_eq!(json["outbox"]["entries"], entries.len(), "{json:#}");
    assert_eq!(json["outbox"]["undelivered"], 0, "{json:#}");
    assert_eq!(json["outbox"]["unacknowledged"], 0, "{json:#}");
    // A window is alerted from its alert until its update, when it closes.
    let kind = |k: &str| entries.iter().filter(|(kind, _)| kind == k).count() as u64;
    assert_eq!(sum(&json, "alerted"), kind("alert") - kind("alert_update"));
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("rulehost:{gv:*}:w:*")
        .query(&mut redis.conn().unwrap())
        .unwrap();
    assert!(
        !keys.is_empty(),
        "windows are open before the closing events"
    );
    assert_eq!(sum(&json, "windows"), keys.len() as u64, "{json:#}");
    let text = state("text");
    assert!(
        text.contains(&format!("`{TOPIC}/0`: up to offset ")),
        "{text}"
    );
    assert!(text.contains("  RULE  "), "{text}");

    // The closing events close every window; each partition moves one offset on.
    kafka.produce(tail);
    wait_done(&kafka, &redis, "gv", &events, &[&worker]);
    worker.stop();
    let json: Value = serde_json::from_str(&state("json")).unwrap();
    assert_eq!(json["rules"], serde_json::json!([]), "{json:#}");
    assert_eq!(json["applied"], last_offsets(&events), "{json:#}");
    assert_eq!(json["outbox"]["entries"], outbox(&redis, "gv").len());
}

#[test]
fn bad_lines_are_counted_with_their_offsets() {
    let Some(redis) = Redis::start() else { return };
    let kafka = Kafka::new(1);
    let mut events = events(1);
    events.insert(3, (0, "not json".to_owned()));
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("w.jsonl");
    kafka.produce(&events);
    let worker = Worker::start(&kafka, &redis, "gb", &out, &[]);
    wait_done(&kafka, &redis, "gb", &events, &[&worker]);
    worker.wait_log(&format!("`{TOPIC}/0:3`: skipped"), 1);
    worker.stop();
    let log = std::fs::read_to_string(out.with_extension("log")).unwrap();
    assert!(log.contains(", 1 bad lines,"), "{log}");
}

#[test]
fn a_rule_set_that_fails_to_load_keeps_the_old_one() {
    let Some(redis) = Redis::start() else { return };
    let kafka = Kafka::new(3);
    let events = events(3);
    let eval = eval_records(&events);
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    copy_folder(&rules_tests(), &rules);
    let lock = rulehost().arg("lock").arg(&rules).output().unwrap();
    assert!(
        lock.status.success(),
        "{}",
        String::from_utf8_lossy(&lock.stderr)
    );
    let out = dir.path().join("w.jsonl");
    let (head, tail) = events.split_at(events.len() / 2);
    let extra = ["--locked", "--watch-seconds", "1", "--batch-size", "20"];
    let worker = Worker::start_on(&rules, &kafka, &redis, "gl", &out, &extra);
    kafka.produce(head);
    wait_committed(&kafka, "gl", head.len() as i64 / 2, &[&worker]);

    // A rule the lock does not pin: refused under `--locked`, the old set runs on.
    let spec = std::fs::read_to_string(rules.join("databricks_install_library_all_clusters.yml"))
        .unwrap()
        .replace(
            "InstallLibraryAllClusters\"",
            "InstallLibraryAllClustersCopy\"",
        );
    std::fs::write(rules.join("copy.yml"), spec).unwrap();
    worker.signal("-HUP");
    worker.wait_log("the old one runs on", 1);
    // Removed again: the folder's change is seen and the set loads.
    std::fs::remove_file(rules.join("copy.yml")).unwrap();
    worker.wait_log("rulehost serve: loaded ", 1);

    kafka.produce(tail);
    wait_done(&kafka, &redis, "gl", &events, &[&worker]);
    worker.stop();
    // Nothing dropped or counted twice across the reloads.
    check(&eval, &redis, "gl", &[out]);
}

/// The state on a Redis Cluster of three primaries (`redis+cluster://`): two workers on
/// four partitions give `eval`'s alerts, the state is spread over more than one node, and
/// `rulehost state` finds the open windows, offsets and outbox on every node.
#[test]
fn a_redis_cluster_holds_the_state_with_evals_alerts() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let kafka = Kafka::new(4);
    let events = events(4);
    let eval = eval_records(&events);
    // The closing events (one per partition) come last: before them, windows are open.
    let (head, tail) = events.split_at(events.len() - 4);
    let dir = tempfile::tempdir().unwrap();
    let outs: Vec<PathBuf> = (0..2)
        .map(|i| dir.path().join(format!("w{i}.jsonl")))
        .collect();
    let workers: Vec<Worker> = outs
        .iter()
        .map(|out| Worker::start(&kafka, &cluster, "gc", out, &[]))
        .collect();
    let refs: Vec<&Worker> = workers.iter().collect();
    kafka.produce(head);
    wait_done(&kafka, &cluster, "gc", head, &refs);

    let state = || state_json(&cluster.state_url(), "gc");
    let keys = |pattern: &str| -> Vec<usize> {
        let keys = |node: &Redis| -> Vec<String> {
            redis::cmd("KEYS")
                .arg(pattern)
                .query(&mut node.conn().unwrap())
                .unwrap()
        };
        cluster.nodes.iter().map(|node| keys(node).len()).collect()
    };
    let windows = keys("rulehost:{gc:*}:w:*");
    assert!(
        windows.iter().filter(|&&n| n > 0).count() >= 2,
        "open windows per node: {windows:?}"
    );
    let json = state();
    let open: u64 = json["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["windows"].as_u64().unwrap())
        .sum();
    assert_eq!(open, windows.iter().sum::<usize>() as u64, "{json:#}");
    assert_eq!(json["applied"], last_offsets(head), "{json:#}");

    kafka.produce(tail);
    wait_done(&kafka, &cluster, "gc", &events, &refs);
    for worker in workers {
        worker.stop();
    }
    check(&eval, &cluster, "gc", &outs);
    let json = state();
    assert_eq!(json["rules"], serde_json::json!([]), "{json:#}");
    assert_eq!(json["applied"], last_offsets(&events), "{json:#}");
    assert_eq!(
        json["outbox"]["entries"],
        outbox(&cluster, "gc").len(),
        "{json:#}"
    );
    assert_eq!(json["outbox"]["undelivered"], 0, "{json:#}");
    assert_eq!(json["outbox"]["unacknowledged"], 0, "{json:#}");

    // One node named as one server: the keys of the others' slots are `MOVED`, and the
    // message says how to name a cluster.
    let out = rulehost()
        .arg("state")
        .arg(cluster.nodes[0].url())
        .args(["--state-namespace", "gc"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("name it `redis+cluster://HOST:PORT`"),
        "{stderr}"
    );
    // `serve` refuses it at once, before it reads the topic.
    let out = rulehost()
        .args(["serve", "--rules"])
        .arg(rules_tests())
        .args(["--kafka-brokers", &kafka.brokers(), "--topic", TOPIC])
        .args(["--group", "gx", "--state", &cluster.nodes[0].url()])
        .arg("-o")
        .arg(dir.path().join("gx.jsonl"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("is a node of a Redis Cluster"), "{stderr}");
}

#[test]
fn three_workers_share_six_partitions() {
    let Some(redis) = Redis::start() else { return };
    let kafka = Kafka::new(6);
    let events = events(6);
    let eval = eval_records(&events);
    let dir = tempfile::tempdir().unwrap();
    let outs: Vec<PathBuf> = (0..3)
        .map(|i| dir.path().join(format!("w{i}.jsonl")))
        .collect();
    let workers: Vec<Worker> = outs
        .iter()
        .map(|out| Worker::start(&kafka, &redis, "g3", out, &[]))
        .collect();
    kafka.produce(&events);
    let refs: Vec<&Worker> = workers.iter().collect();
    wait_done(&kafka, &redis, "g3", &events, &refs);
    for worker in workers {
        worker.stop();
    }
    check(&eval, &redis, "g3", &outs);
}

#[test]
fn a_worker_killed_mid_stream_and_restarted_loses_and_duplicates_nothing() {
    let Some(redis) = Redis::start() else { return };
    let kafka = Kafka::new(3);
    let events = events(3);
    let eval = eval_records(&events);
    let dir = tempfile::tempdir().unwrap();
    let (first, second) = (dir.path().join("a.jsonl"), dir.path().join("b.jsonl"));
    kafka.produce(&events);
    // Small batches, so that the kill lands while batches are being applied.
    let worker = Worker::start(&kafka, &redis, "gk", &first, &["--batch-size", "10"]);
    wait_committed(&kafka, "gk", events.len() as i64 / 3, &[&worker]);
    worker.kill();
    let worker = Worker::start(&kafka, &redis, "gk", &second, &[]);
    wait_done(&kafka, &redis, "gk", &events, &[&worker]);
    worker.stop();
    check(&eval, &redis, "gk", &[first, second]);
}

#[test]
fn a_rebalance_while_events_flow_loses_and_duplicates_nothing() {
    let Some(redis) = Redis::start() else { return };
    let kafka = Kafka::new(6);
    let events = events(6);
    let eval = eval_records(&events);
    let dir = tempfile::tempdir().unwrap();
    let outs: Vec<PathBuf> = (0..2)
        .map(|i| dir.path().join(format!("w{i}.jsonl")))
        .collect();
    let (head, tail) = events.split_at(events.len() / 2);
    let first = Worker::start(&kafka, &redis, "gr", &outs[0], &["--batch-size", "20"]);
    kafka.produce(head);
    wait_committed(&kafka, "gr", head.len() as i64 / 4, &[&first]);
    // A second member joins while the first is busy: the partitions are shared out again.
    let second = Worker::start(&kafka, &redis, "gr", &outs[1], &["--batch-size", "20"]);
    kafka.produce(tail);
    wait_committed(
        &kafka,
        "gr",
        head.len() as i64 + tail.len() as i64 / 4,
        &[&first, &second],
    );
    // ... and leaves again: the first takes every partition back.
    second.stop();
    wait_done(&kafka, &redis, "gr", &events, &[&first]);
    first.stop();
    check(&eval, &redis, "gr", &outs);
}

#[test]
fn redis_restarted_mid_stream_loses_and_duplicates_nothing() {
    let Some(mut redis) = Redis::start() else {
        return;
    };
    let kafka = Kafka::new(3);
    let events = events(3);
    let eval = eval_records(&events);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("w.jsonl");
    let (head, tail) = events.split_at(events.len() / 2);
    let worker = Worker::start(&kafka, &redis, "gs", &out, &["--batch-size", "20"]);
    kafka.produce(head);
    wait_committed(&kafka, "gs", head.len() as i64 / 2, &[&worker]);
    redis.restart();
    kafka.produce(tail);
    wait_done(&kafka, &redis, "gs", &events, &[&worker]);
    worker.stop();
    check(&eval, &redis, "gs", &[out]);
}

#[test]
fn the_same_batches_delivered_twice_change_nothing() {
    let Some(redis) = Redis::start() else { return };
    let kafka = Kafka::new(3);
    let events = events(3);
    let eval = eval_records(&events);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("w.jsonl");
    kafka.produce(&events);
    let worker = Worker::start(&kafka, &redis, "g2", &out, &[]);
    wait_done(&kafka, &redis, "g2", &events, &[&worker]);
    worker.stop();
    let before = outbox(&redis, "g2");
    // Every message again, as after a crash before any commit: a new consumer group (it
    // starts at the earliest offsets) on the same state.
    let again = dir.path().join("again.jsonl");
    let worker = Worker::start(
        &kafka,
        &redis,
        "g2-again",
        &again,
        &["--state-namespace", "g2"],
    );
    wait_done_in(&kafka, &redis, "g2-again", "g2", SLOTS, &events, &[&worker]);
    worker.stop();
    assert_eq!(outbox(&redis, "g2"), before, "the outbox is unchanged");
    assert_eq!(std::fs::read_to_string(&again).unwrap_or_default(), "");
    check(&eval, &redis, "g2", &[out]);
}

/// Every outbox entry of `group` (one hash slot), all fields, sorted (the order of entries
/// of different windows may differ between two ways of applying the same batches).
fn outbox_entries(redis: &Redis, group: &str) -> Vec<BTreeMap<String, String>> {
    let mut conn = redis.conn().unwrap();
    let mut out = Vec::new();
    {
        let stream = format!("rulehost:{{{group}:0}}:outbox");
        let entries: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
            .arg(&stream)
            .arg("-")
            .arg("+")
            .query(&mut conn)
            .unwrap();
        for entry in entries.ids {
            let fields: BTreeMap<String, String> = entry
                .map
                .keys()
                .map(|k| (k.clone(), entry.get::<String>(k).unwrap()))
                .collect();
            out.push(fields);
        }
    }
    out.sort();
    out
}

/// How [`apply_sample`] applies the sample.
#[derive(Clone, Copy)]
struct Applying {
    /// Lines per batch.
    batch: usize,
    /// As the serve loop does (see [`apply_sample`]), else one batch at a time.
    pipelined: bool,
    /// Fresh batches sent aggregated (the state's default), else match by match.
    aggregate: bool,
}

/// Applies the demo sample (one source) to `group`'s state with the library's stage and
/// state, one batch at a time, or as the serve loop does: a group of batches sent, the next
/// evaluated meanwhile, then the replies read. Pipelined, two batches of the source go in
/// each group (applied in two waves), and the stage is told after each batch that its
/// windows never end, so that it sends no fields for any later window and the state must
/// ask for them. Returns how many calls were made again with fields, and how many
/// aggregated calls were made again match by match.
fn apply_sample(redis: &Redis, lines: &[String], group: &str, how: Applying) -> (u64, u64) {
    use rulehost::eval::{MatchStage, Quarantine, Rule};
    use rulehost::input::LineBatch;
    use rulehost::state::redis::{InFlight, RedisSettings, RedisState};

    let runtime = rulehost::runtime::Runtime::new(rulehost::runtime::Limits::default()).unwrap();
    let rules: Vec<Rule> = crate::util::load(&runtime, &rules_tests())
        .into_iter()
        .map(Rule::from)
        .filter(|r| r.spec.enabled)
        .collect();
    let mut stage = MatchStage::new(
        rules,
        rulehost::clock::Clock::default(),
        Quarantine::default(),
        Box::new(|_| {}),
    );
    // One hash slot: every call of a batch is the same call, so that a call made again
    // with fields after the next batch's had been applied would find its matches skipped.
    let mut settings = RedisSettings::new(&redis.url(), group);
    settings.slots = 1;
    settings.aggregate = how.aggregate;
    let mut state = RedisState::connect(settings).unwrap();
    let source: std::sync::Arc<str> = format!("{TOPIC}/0").into();
    let batches = lines.chunks(how.batch).enumerate().map(|(c, chunk)| {
        let mut batch = LineBatch::default();
        for (i, line) in chunk.iter().enumerate() {
            batch.push_line((c * how.batch + i) as u64, line.as_bytes());
        }
        batch
    });
    if !how.pipelined {
        for batch in batches {
            let matches = stage.batch(source.clone(), batch, 1 << 20);
            state.apply(&mut stage, matches).1.unwrap();
        }
        return (state.field_requests, state.detail_requests);
    }
    let mut batches = batches.peekable();
    let mut in_flight: Option<InFlight> = None;
    while batches.peek().is_some() || in_flight.is_some() {
        let mut sending = Vec::new();
        for batch in batches.by_ref().take(2) {
            let matches = stage.batch(source.clone(), batch, 1 << 20);
            for key in &matches.keys {
                stage.learn_end(&key.id, i64::MAX / 2, 0);
            }
            sending.push(matches);
        }
        if let Some(mut flight) = in_flight.take() {
            state.finish(&mut stage, &mut flight).unwrap();
        }
        if !sending.is_empty() {
            in_flight = Some(state.send(&stage, sending));
        }
    }
    (state.field_requests, state.detail_requests)
}

/// Every window of `group` (one hash slot) as the state holds it: its hash and its unique
/// values, by window id.
fn windows(
    redis: &Redis,
    group: &str,
) -> BTreeMap<String, (BTreeMap<String, String>, Vec<String>)> {
    let mut conn = redis.conn().unwrap();
    let prefix = format!("rulehost:{{{group}:0}}:");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}w:*"))
        .query(&mut conn)
        .unwrap();
    keys.into_iter()
        .map(|key| {
            let id = key.strip_prefix(&format!("{prefix}w:")).unwrap().to_owned();
            let hash: BTreeMap<String, String> =
                redis::cmd("HGETALL").arg(&key).query(&mut conn).unwrap();
            let mut values: Vec<String> = redis::cmd("SMEMBERS")
                .arg(format!("{prefix}u:{id}"))
                .query(&mut conn)
                .unwrap();
            values.sort();
            (id, (hash, values))
        })
        .collect()
}

#[test]
fn pipelined_batches_are_applied_in_order_with_the_fields_the_state_asks_for() {
    let Some(redis) = Redis::start() else { return };
    let lines = sample_without_closing_events();
    let how = Applying {
        batch: 25,
        pipelined: false,
        aggregate: true,
    };
    assert_eq!(apply_sample(&redis, &lines, "one-by-one", how).0, 0);
    let pipelined = Applying {
        pipelined: true,
        ..how
    };
    let (asked, _) = apply_sample(&redis, &lines, "pipelined", pipelined);
    assert!(asked > 0, "the state asked for no fields");
    let want = reference_outbox(&redis, "one-by-one");
    assert_eq!(outbox_entries(&redis, "pipelined"), want);
    same_windows(&redis, "one-by-one", "pipelined");
}

/// The demo sample without its closing events: the windows stay, to be compared.
fn sample_without_closing_events() -> Vec<String> {
    events_of(&repo().join("demo/databricks-audit-sample.jsonl"), 1)
        .into_iter()
        .map(|(_, line)| line)
        .filter(|line| !line.contains("\"close\""))
        .collect()
}

/// The outbox of the reference `group`, which must hold at least 10 alerts.
fn reference_outbox(redis: &Redis, group: &str) -> Vec<BTreeMap<String, String>> {
    let want = outbox_entries(redis, group);
    let alerts = want.iter().filter(|e| e["k"] == "alert").count();
    assert!(alerts >= 10, "{want:#?}");
    want
}

/// Asserts that `group` holds the same windows as `reference`.
fn same_windows(redis: &Redis, reference: &str, group: &str) {
    let want = windows(redis, reference);
    assert!(want.len() >= 10, "{} windows", want.len());
    let got = windows(redis, group);
    let differ: Vec<&String> = want
        .keys()
        .chain(got.keys())
        .filter(|id| want.get(*id) != got.get(*id))
        .collect();
    assert!(
        differ.is_empty(),
        "{} of {} windows differ; the first: {:?} (`{reference}`) vs {:?} (`{group}`)",
        differ.len(),
        want.len(),
        want.get(differ[0]),
        got.get(differ[0])
    );
}

/// Aggregated calls (a segment of matches per window and guessed boundary, counted at once)
/// leave the outbox and windows that the same batches sent match by match leave: alerts
/// crossing their threshold mid-segment (their counts, times and `created`), unique values,
/// windows closed and opened again within a batch; batches of 500 lines, so that segments
/// are long. The stage's guesses are right here (it is told each window's end): no call is
/// sent again match by match. Pipelined, where the stage is told that no window ends and
/// so guesses wrong, the calls are sent again match by match, and the result is the same.
#[test]
fn aggregated_batches_leave_the_state_that_matches_one_by_one_leave() {
    let Some(redis) = Redis::start() else { return };
    let lines = sample_without_closing_events();
    let by_match = Applying {
        batch: 500,
        pipelined: false,
        aggregate: false,
    };
    assert_eq!(apply_sample(&redis, &lines, "by-match", by_match), (0, 0));
    let aggregated = Applying {
        aggregate: true,
        ..by_match
    };
    assert_eq!(
        apply_sample(&redis, &lines, "aggregated", aggregated),
        (0, 0)
    );
    let pipelined = Applying {
        pipelined: true,
        ..aggregated
    };
    let (asked, detailed) = apply_sample(&redis, &lines, "pipelined", pipelined);
    assert!(asked > 0 && detailed > 0, "{asked} {detailed}");
    let want = reference_outbox(&redis, "by-match");
    let updates = want.iter().filter(|e| e["k"] == "alert_update").count();
    assert!(updates >= 5, "{want:#?}");
    for group in ["aggregated", "pipelined"] {
        assert_eq!(outbox_entries(&redis, group), want, "`{group}`");
        same_windows(&redis, "by-match", group);
    }
}

/// The load numbers of the README (issue 15): events/s of one and of two `rulehost serve`
/// workers against `rulehost eval --threads 1` over the same events, in the same run, in
/// interleaved rounds (medians printed last); Redis round trips per 1,000 events, each
/// worker's peak RSS, and the CPU seconds of the worker(s) and of `redis-server`. Not a
/// pass/fail test (every run's alerts are still checked against `eval`'s): run it with
/// `cargo test --release --features serve -p rulehost --test it -- --ignored serve_load
/// --nocapture`.
///
/// The events: `SERVE_LOAD_STREAMS` (default 4) streams of the generator with their own
/// seeds and their own users (`first.last+k@example.com` in stream `k`), as that many
/// tenants' audit logs, merged in time order: `SERVE_LOAD_EVENTS` in all (default
/// 300,000), keyed by user into `SERVE_LOAD_PARTITIONS` (default 64) and produced with lz4.
/// librdkafka's mock broker keeps at most 5 MB per partition (it deletes older messages;
/// the test fails if it did), and one generated stream has a user with 17% of its events:
/// the streams, the partitions and the compression keep the busiest partition under it.
///
/// `SERVE_LOAD_ROUNDS` (default 3) rounds of: `eval` (its wall time less that of an
/// `eval` of one line: loading the rules), then for each `SERVE_LOAD_FSYNC` (Redis'
/// `appendfsync`, comma-separated, default `always`, as the scenarios run it) one worker
/// and two workers, each on a fresh `redis-server` and consumer group, timed from the
/// group's first commit to the first with 99% of the events committed (steady rate), and
/// to its last (with the clock guard's wait for the last events). `SERVE_LOAD_BATCH`: `--batch-size` (default 2000);
/// `SERVE_LOAD_KAFKA_OPTIONS`: comma-separated `KEY=VALUE`s, each a `--kafka-option`;
/// `SERVE_LOAD_ARGS`: more `serve` arguments, separated by spaces (`--state-slots 1`);
/// `SERVE_LOAD_WORKERS`: the worker counts to run (comma-separated, default `1,2`). Each
/// round first times a plain consumer reading the topic: the mock broker's own rate. Each
/// run prints redis-server's own time per command (`INFO commandstats`), per event.
#[test]
#[ignore = "a measurement, run by hand"]
fn serve_load() {
    let var = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.into());
    let n: usize = var("SERVE_LOAD_EVENTS", "300000").parse().unwrap();
    let streams: usize = var("SERVE_LOAD_STREAMS", "4").parse().unwrap();
    let partitions: i32 = var("SERVE_LOAD_PARTITIONS", "64").parse().unwrap();
    let rounds: usize = var("SERVE_LOAD_ROUNDS", "3").parse().unwrap();
    let batch = var("SERVE_LOAD_BATCH", "2000");
    let fsyncs: Vec<&'static str> = var("SERVE_LOAD_FSYNC", "always")
        .split(',')
        .map(|f| match f {
            "always" => "always",
            "everysec" => "everysec",
            "no" => "no",
            other => panic!("SERVE_LOAD_FSYNC: `{other}` is not always, everysec or no"),
        })
        .collect();

    let dir = tempfile::tempdir().unwrap();
    println!("files in `{}`", dir.path().display());
    let dir = dir.keep();
    let input = dir.join("events.jsonl");
    load_events(&input, n, streams);
    let events = events_of(&input, partitions);
    let lines: Vec<&str> = events.iter().map(|(_, l)| l.as_str()).collect();
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let one_line = dir.join("one.jsonl");
    std::fs::write(&one_line, format!("{}\n", lines[lines.len() - 1])).unwrap();
    let mut busiest = vec![0usize; partitions as usize];
    for (p, line) in &events {
        busiest[*p as usize] += line.len();
    }
    println!(
        "{} events ({} MB) in {streams} streams on {partitions} partitions, the busiest {:.1} MB",
        events.len(),
        lines.iter().map(|l| l.len() + 1).sum::<usize>() / 1_000_000,
        *busiest.iter().max().unwrap() as f64 / 1e6
    );

    let kafka = Kafka::new(partitions);
    kafka.produce_with(
        &events,
        &[("compression.type", "lz4"), ("linger.ms", "100")],
    );
    assert_eq!(
        kafka.low_watermarks(),
        vec![0; partitions as usize],
        "the mock broker deleted messages: fewer events or more partitions"
    );
    let options: Vec<String> = var("SERVE_LOAD_KAFKA_OPTIONS", "")
        .split(',')
        .filter(|o| !o.is_empty())
        .flat_map(|o| ["--kafka-option".to_owned(), o.to_owned()])
        .chain(
            var("SERVE_LOAD_ARGS", "")
                .split_whitespace()
                .map(str::to_owned),
        )
        .collect();
    let worker_counts: Vec<usize> = var("SERVE_LOAD_WORKERS", "1,2")
        .split(',')
        .map(|w| {
            w.parse()
                .expect("SERVE_LOAD_WORKERS: comma-separated numbers")
        })
        .collect();
    let options: Vec<&str> = options.iter().map(String::as_str).collect();

    let mut eval_rates = Vec::new();
    let mut rows: BTreeMap<(&str, usize), Vec<LoadRun>> = BTreeMap::new();
    for round in 0..rounds {
        let (read, read_seconds) = consume_all(&kafka, &format!("read-{round}"));
        println!(
            "round {round}: a plain consumer reads the topic from the mock broker: {:.0} \
             events/s ({read} in {read_seconds:.1} s)",
            read as f64 / read_seconds
        );
        let (records, seconds, cpu) = eval_timed(&input);
        let (_, startup, startup_cpu) = eval_timed(&one_line);
        let rate = events.len() as f64 / (seconds - startup);
        println!(
            "round {round}: eval --threads 1: {rate:.0} events/s ({seconds:.2} s, less \
             {startup:.2} s to load the rules; {} alerts); CPU {:.1} µs per event",
            records.len(),
            1e6 * (cpu - startup_cpu) / events.len() as f64
        );
        eval_rates.push(rate);
        for &fsync in &fsyncs {
            for &workers in &worker_counts {
                let group = format!("load-{fsync}-{workers}-{round}");
                let run = serve_run(
                    &kafka, &events, &records, &dir, &group, fsync, workers, &batch, &options,
                );
                println!(
                    "round {round}: serve, appendfsync {fsync}, {workers} worker(s): {:.0} \
                     events/s ({:.0}% of eval) to 99% committed, {:.0} events/s to the last \
                     commit in {:.1} s; {:.2} Redis round trips per 1,000 \
                     events ({:.2} for fields, {:.2} for calls sent again match by match); \
                     {:.0} bytes of append-only file per event; peak \
                     RSS {} MB; CPU per event: worker(s) {:.1} µs, redis-server {:.1} µs; the \
                     loop's wall time: in rules {:.1} s, blocked on Redis {:.1} s",
                    run.steady_rate,
                    100.0 * run.steady_rate / rate,
                    run.rate,
                    run.seconds,
                    run.trips_per_1000,
                    run.asked_per_1000,
                    run.detailed_per_1000,
                    run.aof_per_event,
                    run.peak_mb
                        .iter()
                        .map(|m| m.to_string())
                        .collect::<Vec<_>>()
                        .join(" + "),
                    1e6 * run.worker_cpu / run.timed_events,
                    1e6 * run.redis_cpu / run.timed_events,
                    run.rules_seconds,
                    run.redis_seconds,
                );
                rows.entry((fsync, workers)).or_default().push(run);
            }
        }
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let eval_rate = median(eval_rates);
    println!("medians of {rounds} round(s):");
    println!("  eval --threads 1: {eval_rate:.0} events/s");
    for ((fsync, workers), runs) in rows {
        let rate = median(runs.iter().map(|r| r.steady_rate).collect());
        println!(
            "  serve, appendfsync {fsync}, {workers} worker(s): {rate:.0} events/s ({:.0}% of \
             eval) to 99% committed, {:.0} events/s to the last commit, {:.2} Redis round \
             trips per 1,000 events, peak RSS {:.0} MB per worker",
            100.0 * rate / eval_rate,
            median(runs.iter().map(|r| r.rate).collect()),
            median(runs.iter().map(|r| r.trips_per_1000).collect()),
            median(
                runs.iter()
                    .flat_map(|r| r.peak_mb.iter().map(|&m| m as f64))
                    .collect()
            ),
        );
    }
}

/// Reads the whole topic with one plain consumer of a new group (librdkafka's defaults, as
/// `serve`'s consumer): how many messages, and the seconds from the first to the last.
fn consume_all(kafka: &Kafka, group: &str) -> (u64, f64) {
    use rdkafka::message::Message;
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", kafka.brokers())
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    consumer.subscribe(&[TOPIC]).unwrap();
    let total = kafka.partitions as usize;
    let ends: Vec<i64> = (0..kafka.partitions)
        .map(|p| {
            consumer
                .fetch_watermarks(TOPIC, p, Duration::from_secs(10))
                .unwrap()
                .1
        })
        .collect();
    let (mut read, mut done, mut first) = (0u64, 0usize, None);
    let deadline = Instant::now() + Duration::from_secs(300);
    while done < total {
        assert!(Instant::now() < deadline, "read {read} messages only");
        let Some(message) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let message = message.unwrap();
        first.get_or_insert_with(Instant::now);
        read += 1;
        if message.offset() + 1 == ends[message.partition() as usize] {
            done += 1;
        }
    }
    (read, first.unwrap().elapsed().as_secs_f64())
}

/// `n` events of `streams` generator streams (see [`serve_load`]), merged in time order.
fn load_events(path: &Path, n: usize, streams: usize) {
    let mut all: Vec<(i64, usize, usize, String)> = Vec::new();
    for k in 0..streams {
        let part = path.with_extension(format!("{k}.jsonl"));
        let made = Command::new("python3")
            .arg(repo().join("scripts/gen_databricks.py"))
            .args(["--events", &(n / streams).to_string(), "--hours", "240"])
            .args(["--seed", &(7 + k).to_string(), "--output"])
            .arg(&part)
            .status()
            .unwrap();
        assert!(made.success());
        let text = std::fs::read_to_string(&part).unwrap();
        std::fs::remove_file(&part).unwrap();
        for (i, line) in text.lines().enumerate() {
            let line = if k == 0 {
                line.to_owned()
            } else {
                line.replace("@example.com", &format!("+{k}@example.com"))
            };
            let time = serde_json::from_str::<Value>(&line).unwrap()["timestamp"]
                .as_i64()
                .unwrap();
            all.push((time, k, i, line));
        }
    }
    all.sort_unstable_by_key(|a| (a.0, a.1, a.2));
    let lines: Vec<String> = all.into_iter().map(|(_, _, _, l)| l).collect();
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

/// `rulehost eval --threads 1` of `input`: its records, its wall time and its CPU seconds.
fn eval_timed(input: &Path) -> (Vec<Value>, f64, f64) {
    let cpu = children_cpu_seconds();
    let started = Instant::now();
    let out = rulehost()
        .args(["eval", "--threads", "1", "--rules"])
        .arg(rules_tests())
        .arg(input)
        .output()
        .unwrap();
    let seconds = started.elapsed().as_secs_f64();
    let cpu = children_cpu_seconds() - cpu;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        records(&String::from_utf8(out.stdout).unwrap()),
        seconds,
        cpu,
    )
}

/// CPU seconds (user + system) of this process' children that were waited for.
fn children_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    // Fields 16 and 17 of `stat` (cutime, cstime), counted from the state (field 3).
    (fields[13].parse::<f64>().unwrap() + fields[14].parse::<f64>().unwrap()) / 100.0
}

/// What one timed serve run measured.
struct LoadRun {
    /// Events per second, first commit to last.
    rate: f64,
    /// Events per second, first commit to the first with 99% of the events committed.
    steady_rate: f64,
    /// Events committed between the first commit and the last.
    timed_events: f64,
    seconds: f64,
    trips_per_1000: f64,
    /// Calls made again with the fields they asked for, per 1,000 events.
    asked_per_1000: f64,
    /// Aggregated calls the script sent back to be made match by match, per 1,000 events.
    detailed_per_1000: f64,
    /// Bytes Redis appended to its append-only file per event.
    aof_per_event: f64,
    /// Each worker's peak RSS (VmHWM), MB.
    peak_mb: Vec<u64>,
    /// CPU seconds (user + system) of the workers, and of `redis-server`.
    worker_cpu: f64,
    redis_cpu: f64,
    /// The workers' own split of their loop: in rules, and blocked on Redis.
    rules_seconds: f64,
    redis_seconds: f64,
}

/// CPU seconds (user + system) of process `pid`.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    // Fields 14 and 15 of `stat` (utime, stime), counted from the state (field 3).
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

/// One timed run of `workers` serve processes over the topic, on a fresh Redis.
#[expect(clippy::too_many_arguments, reason = "one run's settings")]
fn serve_run(
    kafka: &Kafka,
    events: &[(i32, String)],
    eval: &[Value],
    dir: &Path,
    group: &str,
    fsync: &'static str,
    workers: usize,
    batch: &str,
    options: &[&str],
) -> LoadRun {
    let redis = Redis::start_with(fsync).expect("redis-server");
    let outs: Vec<PathBuf> = (0..workers)
        .map(|i| dir.join(format!("{group}-{i}.jsonl")))
        .collect();
    let addrs: Vec<String> = (0..workers)
        .map(|_| format!("127.0.0.1:{}", free_port()))
        .collect();
    let running: Vec<Worker> = outs
        .iter()
        .zip(&addrs)
        .map(|(out, addr)| {
            let mut extra = vec!["--batch-size", batch, "--metrics-addr", addr.as_str()];
            extra.extend_from_slice(options);
            Worker::start(kafka, &redis, group, out, &extra)
        })
        .collect();
    let total = events.len() as i64;
    let watcher: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", kafka.brokers())
        .set("group.id", group)
        .create()
        .unwrap();
    let mut list = TopicPartitionList::new();
    for p in 0..kafka.partitions {
        list.add_partition(TOPIC, p);
    }
    let committed = || -> i64 {
        let Ok(c) = watcher.committed_offsets(list.clone(), Duration::from_secs(5)) else {
            return 0;
        };
        c.elements()
            .iter()
            .map(|e| match e.offset() {
                Offset::Offset(o) => o,
                _ => 0,
            })
            .sum()
    };
    let deadline = Instant::now() + Duration::from_secs(900);
    let (mut first, mut at_first) = (None, 0);
    // When 99% of the events were committed: the last partitions' last events may wait a
    // second for the clock guard (a partition's event far ahead of its clock waits for the
    // next event, or for a second of quiet), which a topic that goes on never sees.
    let mut most: Option<(f64, i64)> = None;
    let redis_pid = redis.child.as_ref().unwrap().id();
    let (mut cpu_at_first, mut redis_at_first) = (0.0, 0.0);
    loop {
        let done = committed();
        if first.is_none() && done > 0 {
            first = Some(Instant::now());
            at_first = done;
            cpu_at_first = running.iter().map(|w| cpu_seconds(w.child.id())).sum();
            redis_at_first = cpu_seconds(redis_pid);
        }
        if let Some(at) = first
            && most.is_none()
            && done * 100 >= total * 99
        {
            most = Some((at.elapsed().as_secs_f64(), done));
        }
        if done == total {
            break;
        }
        let logs: Vec<String> = running.iter().map(|w| w.log()).collect();
        assert!(
            Instant::now() < deadline,
            "only {done} of {total} committed: {}",
            logs.join("\n---\n")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let seconds = first.unwrap().elapsed().as_secs_f64();
    let worker_cpu = running
        .iter()
        .map(|w| cpu_seconds(w.child.id()))
        .sum::<f64>()
        - cpu_at_first;
    let redis_cpu = cpu_seconds(redis_pid) - redis_at_first;
    // The metrics page is rendered every 500 ms.
    std::thread::sleep(Duration::from_millis(1200));
    let (mut trips, mut counted, mut rules_seconds, mut redis_seconds) = (0.0, 0.0, 0.0, 0.0);
    let (mut asked, mut detailed) = (0.0, 0.0);
    let mut peak_mb = Vec::new();
    for (worker, addr) in running.iter().zip(&addrs) {
        let (_, page) = http_get(addr, "/metrics");
        trips += metric(&page, "rulehost_redis_round_trips_total").unwrap();
        asked += metric(&page, "rulehost_redis_field_requests_total").unwrap();
        detailed += metric(&page, "rulehost_redis_detail_requests_total").unwrap();
        counted += metric(&page, "rulehost_events_total").unwrap();
        rules_seconds += metric(&page, "rulehost_eval_seconds_sum").unwrap();
        redis_seconds += metric(&page, "rulehost_redis_apply_seconds_sum").unwrap();
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", worker.child.id())).unwrap();
        let kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .unwrap()
            .trim()
            .trim_end_matches(" kB")
            .parse()
            .unwrap();
        peak_mb.push(kb / 1024);
    }
    // Every event was read: none was deleted by the broker (a rebalance, when a worker
    // joins late, has some read again: said below).
    assert!(counted >= total as f64, "{counted} of {total} events read");
    if counted > total as f64 {
        println!(
            "{group}: {} events read twice (a rebalance)",
            counted - total as f64
        );
    }
    let info: String = redis::cmd("INFO")
        .arg("persistence")
        .query(&mut redis.conn().unwrap())
        .unwrap();
    let aof_bytes: f64 = info
        .lines()
        .find_map(|l| l.strip_prefix("aof_current_size:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // Where redis-server's time went, by its own accounting (a script's own time is its
    // EVALSHA's less the commands it called).
    let stats: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(&mut redis.conn().unwrap())
        .unwrap();
    let mut by_command: Vec<(String, f64, f64)> = stats
        .lines()
        .filter_map(|l| {
            let (name, fields) = l.strip_prefix("cmdstat_")?.split_once(':')?;
            let field = |key: &str| -> Option<f64> {
                fields
                    .split(',')
                    .find_map(|f| f.strip_prefix(key)?.strip_prefix('='))?
                    .parse()
                    .ok()
            };
            Some((name.to_owned(), field("calls")?, field("usec")?))
        })
        .collect();
    by_command.sort_by(|a, b| b.2.total_cmp(&a.2));
    println!(
        "{group}: redis-server's commands, µs per event (calls per 1,000 events): {}",
        by_command
            .iter()
            .map(|(name, calls, usec)| format!(
                "{name} {:.2} ({:.0})",
                usec / counted,
                1000.0 * calls / counted
            ))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let refs: Vec<&Worker> = running.iter().collect();
    // `--state-slots N` among the arguments (`SERVE_LOAD_ARGS`), else the default.
    let slots = options
        .windows(2)
        .find(|w| w[0] == "--state-slots")
        .map_or(SLOTS, |w| w[1].parse().expect("--state-slots N"));
    wait_done_in(kafka, &redis, group, group, slots, events, &refs);
    for worker in running {
        worker.stop();
    }
    check(eval, &redis, group, &outs);
    let (most_seconds, most_done) = most.expect("99% were committed before all");
    LoadRun {
        rate: (total - at_first) as f64 / seconds,
        steady_rate: (most_done - at_first) as f64 / most_seconds,
        timed_events: (total - at_first) as f64,
        seconds,
        trips_per_1000: 1000.0 * trips / counted,
        aof_per_event: aof_bytes / counted,
        asked_per_1000: 1000.0 * asked / counted,
        detailed_per_1000: 1000.0 * detailed / counted,
        peak_mb,
        worker_cpu,
        redis_cpu,
        rules_seconds,
        redis_seconds,
    }
}
