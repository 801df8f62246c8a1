//! hactl against AWS as it behaves, not as moto does: each test starts moto behind the
//! fault-and-latency layer `tests/aws_like/aws_like.py` (NotFound for new ids, throttling,
//! pending/provisioning/creating states, lingering balancer ENIs) with its own settings, and
//! drives the real binary on `tests/fixtures/aws/web.yaml`. What exists is read through the
//! API (`aws::counts`); the layer's own counters show the faults really happened. `up` runs
//! with `--provision-only`: moto's instances have made-up public addresses outside the lab,
//! which nothing here may contact.
//!
//! The layer's own checks (each behaviour, through boto3) are run by `aws_like_layer_checks`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::aws::{counts, decoy_intact, everything, make_decoy, Counts};
use crate::support::{hactl, root, stderr, stdout};

/// moto behind the aws_like layer, killed when dropped.
pub struct AwsLike {
    child: Child,
    pub url: String,
    port: u16,
}

impl AwsLike {
    /// Starts the layer (and moto inside it) on a free 127.0.0.1 port with `settings`.
    pub fn start(settings: Value) -> AwsLike {
        let port = std::net::TcpListener::bind(("127.0.0.1", 0))
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new("python3")
            .arg(root().join("tests/aws_like/aws_like.py"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("AWS_LIKE", settings.to_string())
            .env("MOTO_ENABLE_AMI_VALIDATION", "true")
            .env("MOTO_EC2_ENABLE_INSTANCE_TYPE_VALIDATION", "true")
            .env("MOTO_ENABLE_KEYPAIR_VALIDATION", "true")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start the aws_like layer with `python3` ({e}): it needs moto \
                     (`pip install 'moto[server]'`)"
                )
            });
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "the aws_like layer did not listen on {url}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        AwsLike { child, url, port }
    }

    /// One request to the layer's control endpoint; the JSON answer.
    fn control(&self, method: &str, path: &str, body: &str) -> Value {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to the layer");
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        let (head, json) = out.split_once("\r\n\r\n").expect("an HTTP answer");
        assert!(head.contains(" 200 "), "{method} {path}: {head}");
        serde_json::from_str(json).expect("JSON from the layer")
    }

    /// Changes settings (merged into the current ones).
    pub fn configure(&self, settings: Value) {
        self.control("POST", "/_aws_like/config", &settings.to_string());
    }

    /// What the layer did so far: `throttled`, `not_found`, `rewritten`, ...
    pub fn stats(&self) -> Value {
        self.control("GET", "/_aws_like/stats", "")
    }

    /// All faults off: for reading what exists through the API after a run.
    pub fn calm(&self) {
        self.configure(json!({
            "throttle_share": 0.0, "not_found_secs": 0, "instance_pending_secs": 0,
            "lb_ready_secs": 0, "efs_ready_secs": 0, "rds_ready_secs": 0, "eni_linger_secs": 0,
            "instance_final_state": "running", "lb_final_state": "active",
            "rds_final_status": "available",
        }));
    }

    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.url.clone()),
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_CONFIG_FILE", "/dev/null".into()),
            ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null".into()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ]
    }

    pub async fn sdk(&self) -> aws_config::SdkConfig {
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(&self.url)
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_ec2::config::Credentials::new(
                "testing", "testing", None, None, "test",
            ))
            .load()
            .await
    }
}

impl Drop for AwsLike {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The settings of the acceptance run (issue 12): 10% throttling, 3 s NotFound after create,
/// RDS 20 s and load balancer 5 s to become ready, lingering ENIs 5 s; instances 2 s pending
/// and EFS 2 s creating.
pub fn acceptance_settings() -> Value {
    json!({
        "seed": 12,
        "throttle_share": 0.1,
        "not_found_secs": 3,
        "instance_pending_secs": 2,
        "lb_ready_secs": 5,
        "efs_ready_secs": 2,
        "rds_ready_secs": 20,
        "eni_linger_secs": 5,
    })
}

/// The stack name the fixture gets here.
const NAME: &str = "awslike";

/// `tests/fixtures/aws/web.yaml` (optionally edited) in a temp dir with its own vault.
struct Stack {
    dir: tempfile::TempDir,
    file: PathBuf,
}

impl Stack {
    fn new(edit: impl Fn(String) -> String) -> Stack {
        let dir = tempfile::tempdir().expect("temp dir");
        let text = std::fs::read_to_string(root().join("tests/fixtures/aws/web.yaml"))
            .expect("the fixture");
        let file = dir.path().join("stack.yaml");
        std::fs::write(&file, edit(text.replace("STACKNAME", NAME))).unwrap();
        let s = Stack { dir, file };
        let o = s
            .base()
            .args(["secrets", "init", "-f"])
            .arg(&s.file)
            .output();
        let o = o.expect("hactl runs");
        assert!(o.status.success(), "secrets init: {}", stderr(&o));
        let mut set = s
            .base()
            .args(["secrets", "set", "db_password", "-f"])
            .arg(&s.file)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        set.stdin.take().unwrap().write_all(b"aws-like-pw").unwrap();
        let o = set.wait_with_output().unwrap();
        assert!(o.status.success(), "secrets set: {}", stderr(&o));
        s
    }

    fn base(&self) -> Command {
        let mut c = hactl();
        c.current_dir(self.dir.path());
        c.env("HOME", self.dir.path());
        c.env_remove("HACTL_AGE_KEY");
        c.env_remove("HACTL_AGE_KEY_FILE");
        c.env_remove("AWS_RETRY_MODE");
        c.env_remove("AWS_MAX_ATTEMPTS");
        c
    }

    /// Runs hactl `args -f stack.yaml` against `layer`, killing it after `limit`: a wait that
    /// does not end is a failure of the test, not a hung suite.
    fn run(&self, layer: &AwsLike, args: &[&str], limit: Duration) -> (Output, Duration) {
        let t0 = Instant::now();
        let mut child = self
            .base()
            .envs(layer.env())
            .args(args)
            .arg("-f")
            .arg(&self.file)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("hactl runs");
        loop {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            if t0.elapsed() > limit {
                let _ = child.kill();
                let o = child.wait_with_output().unwrap();
                panic!(
                    "hactl {args:?} still running after {limit:?}\nstdout:\n{}\nstderr:\n{}",
                    stdout(&o),
                    stderr(&o)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        (child.wait_with_output().unwrap(), t0.elapsed())
    }

    /// hactl `args -f stack.yaml` against `layer` with one more environment variable (e.g.
    /// `AWS_MAX_ATTEMPTS`), for runs that end on their first reads.
    fn run_env(&self, layer: &AwsLike, args: &[&str], env: (&str, &str)) -> Output {
        let mut c = self.base();
        c.envs(layer.env()).env(env.0, env.1);
        c.args(args).arg("-f").arg(&self.file);
        c.output().expect("hactl runs")
    }

    /// Starts hactl `args -f stack.yaml` against `layer` and SIGKILLs it (`Child::kill` is
    /// SIGKILL on Unix) `delay` after its `nth` change started (its `nth` progress line
    /// `ADDR: creating…`). None: it was still running then (killed); else its exit code and
    /// the end of its stderr.
    fn killed_after(
        &self,
        layer: &AwsLike,
        args: &[&str],
        nth: usize,
        delay: Duration,
    ) -> Option<(Option<i32>, String)> {
        use std::io::BufRead;
        let mut child = self
            .base()
            .envs(layer.env())
            .args(args)
            .arg("-f")
            .arg(&self.file)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("hactl runs");
        let err = std::io::BufReader::new(child.stderr.take().expect("stderr"));
        let mut started = 0;
        let mut tail = Vec::new();
        for line in err.lines() {
            let Ok(line) = line else { break };
            tail.push(line.clone());
            if line.ends_with('…') {
                started += 1;
                if started == nth {
                    std::thread::sleep(delay);
                    break;
                }
            }
        }
        if child.try_wait().unwrap().is_none() {
            child.kill().expect("SIGKILL hactl");
            child.wait().unwrap();
            return None;
        }
        let code = child.wait().unwrap().code();
        let from = tail.len().saturating_sub(12);
        Some((code, tail[from..].join("\n")))
    }

    fn ok(&self, layer: &AwsLike, args: &[&str], limit: Duration) -> (String, Duration) {
        let (o, took) = self.run(layer, args, limit);
        (crate::support::succeeded(args, &o), took)
    }

    /// Nothing left to change in the cloud: `plan --detailed-exitcode` exits 0. Cloud only
    /// (`--provision-only`): the instances are moto's, with no host behind them to plan on.
    /// `why` says what a change would mean.
    fn assert_converged(&self, layer: &AwsLike, why: &str) {
        let (o, _) = self.run(
            layer,
            &["plan", "--detailed-exitcode", "--provision-only"],
            2 * MINUTE,
        );
        assert_eq!(
            o.status.code(),
            Some(0),
            "{why}:\n{}\n{}",
            stdout(&o),
            stderr(&o)
        );
    }
}

/// What `tests/fixtures/aws/web.yaml` makes, exactly once each: seed 003's set without a key
/// pair (the fixture gives no `hosts.public_key`).
fn full() -> Counts {
    Counts {
        key_pairs: 0,
        ..crate::aws::full()
    }
}

fn n(stats: &Value, key: &str) -> u64 {
    stats[key].as_u64().unwrap_or_default()
}

const MINUTE: Duration = Duration::from_secs(60);

/// The layer's own checks (each behaviour through boto3, on a fake clock).
#[test]
fn aws_like_layer_checks() {
    let o = Command::new("python3")
        .args(["-m", "unittest", "discover", "-s", "tests/aws_like"])
        .current_dir(root())
        .output()
        .expect("python3 runs");
    assert!(
        o.status.success(),
        "the aws_like layer's checks failed:\n{}",
        stderr(&o)
    );
    assert!(stderr(&o).contains("OK"), "{}", stderr(&o));
}

/// Issue 12's acceptance run: `up` of seed 003 from nothing converges under every fault at
/// once (10% throttling, 3 s NotFound after create, RDS 20 s and load balancer 5 s to become
/// ready, lingering ENIs 5 s), makes the full set once (counted through the API, tagged or
/// not), a second `plan` is empty, and `down` (through lingering ENIs) leaves nothing tagged,
/// nothing untagged of its own, and someone else's VPC, security group, instance and bucket
/// (the decoys) as they were.
#[tokio::test(flavor = "multi_thread")]
async fn aws_like_up_plan_down_converge_under_faults() {
    let layer = AwsLike::start(json!({}));
    let conf = layer.sdk().await;
    let decoy = make_decoy(&conf).await;
    let before = everything(&conf).await;
    layer.configure(acceptance_settings());
    let stack = Stack::new(|s| s);
    let (_, took) = stack.ok(
        &layer,
        &["up", "--auto-approve", "--provision-only"],
        5 * MINUTE,
    );
    let up = layer.stats();
    assert!(n(&up, "throttled") > 0, "no call was throttled: {up}");
    assert!(n(&up, "not_found") > 0, "no NotFound was answered: {up}");
    assert!(n(&up, "rewritten") > 0, "no state was rewritten: {up}");
    // The database alone takes 20 s to become available.
    assert!(took > Duration::from_secs(20), "up took {took:?}");

    stack.assert_converged(&layer, "the second plan has changes");

    let after_up = layer.stats();
    layer.calm();
    assert_eq!(
        counts(&conf, NAME).await,
        full(),
        "each resource exactly once"
    );
    assert_eq!(
        everything(&conf).await,
        before.clone() + full(),
        "nothing untagged besides"
    );
    layer.configure(acceptance_settings());

    stack.ok(
        &layer,
        &["down", "--auto-approve", "--allow-data-loss"],
        5 * MINUTE,
    );
    let down = layer.stats();
    assert!(
        n(&down, "dependency_violation") > 0,
        "no delete met a lingering ENI: {down} (after up: {after_up})"
    );
    layer.calm();
    assert_eq!(counts(&conf, NAME).await, Counts::default());
    assert_eq!(everything(&conf).await, before, "down left something");
    decoy_intact(&conf, &decoy).await;
}

/// The balancer's ENIs linger after its delete: `down` retries the security group and subnet
/// deletes that answer DependencyViolation until they go, and leaves nothing tagged.
#[tokio::test(flavor = "multi_thread")]
async fn aws_like_down_outlasts_lingering_enis() {
    let layer = AwsLike::start(json!({}));
    let stack = Stack::new(|s| s);
    stack.ok(
        &layer,
        &["up", "--auto-approve", "--provision-only"],
        5 * MINUTE,
    );
    layer.configure(json!({"eni_linger_secs": 5}));
    stack.ok(
        &layer,
        &["down", "--auto-approve", "--allow-data-loss"],
        5 * MINUTE,
    );
    let down = layer.stats();
    assert!(
        n(&down, "dependency_violation") > 0,
        "no delete met a lingering ENI: {down}"
    );
    layer.calm();
    assert_eq!(counts(&layer.sdk().await, NAME).await, Counts::default());
}

/// A new id is NotFound for seconds on AWS: `up` retries the calls that name one, instead of
/// failing at the first (ModifyVpcAttribute right after CreateVpc).
#[tokio::test(flavor = "multi_thread")]
async fn aws_like_new_ids_not_found_for_seconds_are_retried() {
    let layer = AwsLike::start(json!({"not_found_secs": 3}));
    let stack = Stack::new(|s| s);
    stack.ok(
        &layer,
        &["up", "--auto-approve", "--provision-only"],
        5 * MINUTE,
    );
    assert!(n(&layer.stats(), "not_found") > 0, "{}", layer.stats());
    stack.assert_converged(&layer, "the cloud plan has changes");
}

/// Under 30% throttling every call fails three times in a row often enough that the SDK's
/// default 3 attempts lose the run; adaptive retry with 10 attempts converges.
#[tokio::test(flavor = "multi_thread")]
async fn aws_like_heavy_throttling_converges() {
    let layer = AwsLike::start(json!({"throttle_share": 0.3, "seed": 3}));
    let stack = Stack::new(|s| s);
    stack.ok(
        &layer,
        &["up", "--auto-approve", "--provision-only"],
        5 * MINUTE,
    );
    assert!(n(&layer.stats(), "throttled") > 20, "{}", layer.stats());
    layer.calm();
    stack.assert_converged(&layer, "the cloud plan has changes");
}

/// RDS `incompatible-parameters` is final: the wait ends at once with that status, not after
/// the 40-minute database limit.
#[test]
fn aws_like_rds_failure_state_ends_the_wait() {
    let layer = AwsLike::start(json!({
        "rds_ready_secs": 2, "rds_final_status": "incompatible-parameters"
    }));
    let stack = Stack::new(|s| s);
    let (o, took) = stack.run(
        &layer,
        &["up", "--auto-approve", "--provision-only"],
        3 * MINUTE,
    );
    assert!(!o.status.success(), "up succeeded: {}", stdout(&o));
    let err = stderr(&o);
    assert!(
        err.contains("`incompatible-parameters` instead of becoming available"),
        "{err}"
    );
    assert!(took < 2 * MINUTE, "up took {took:?}");
}

/// An instance that goes `terminated` while `up` waits for `running` (a launch that failed)
/// ends the wait with that state.
#[test]
fn aws_like_terminated_instance_ends_the_wait() {
    let layer = AwsLike::start(json!({
        "instance_pending_secs": 1, "instance_final_state": "terminated"
    }));
    let stack = Stack::new(|s| s);
    let (o, took) = stack.run(
        &layer,
        &["up", "--auto-approve", "--provision-only"],
        3 * MINUTE,
    );
    assert!(!o.status.success(), "up succeeded: {}", stdout(&o));
    let err = stderr(&o);
    assert!(
        err.contains("`terminated` instead of becoming running"),
        "{err}"
    );
    assert!(took < 2 * MINUTE, "up took {took:?}");
}

/// `aws.timeouts.database` bounds the database wait (the error names the last status), and a
/// `plan` while RDS is still creating (no endpoint, port 0) plans no change to it.
#[test]
fn aws_like_plan_while_the_database_creates_changes_nothing() {
    let layer = AwsLike::start(json!({"rds_ready_secs": 600}));
    let stack = Stack::new(|s| {
        s.replacen(
            "aws:\n  region: us-east-1\n",
            "aws:\n  region: us-east-1\n  timeouts:\n    database: 3s\n",
            1,
        )
    });
    let (o, took) = stack.run(
        &layer,
        &["up", "--auto-approve", "--provision-only"],
        3 * MINUTE,
    );
    assert!(!o.status.success(), "up succeeded: {}", stdout(&o));
    let err = stderr(&o);
    assert!(
        err.contains("timed out after 3s waiting for `aws_db_instance.main` to become available (last seen: creating)"),
        "{err}"
    );
    assert!(took < 2 * MINUTE, "up took {took:?}");
    stack.assert_converged(&layer, "a creating database planned a change");
}

/// A `database.port` change is an in-place update that is really sent (ModifyDBInstance
/// `DBPortNumber`): after `up` the next `plan` is empty, not the same change again.
#[test]
fn aws_like_database_port_change_is_applied() {
    let layer = AwsLike::start(json!({}));
    let stack = Stack::new(|s| s);
    stack.ok(
        &layer,
        &["up", "--auto-approve", "--provision-only"],
        5 * MINUTE,
    );
    let text = std::fs::read_to_string(&stack.file).unwrap();
    std::fs::write(
        &stack.file,
        text.replacen("    name: app\n", "    name: app\n    port: 5433\n", 1),
    )
    .unwrap();
    let (plan, _) = stack.ok(&layer, &["plan", "--provision-only"], 2 * MINUTE);
    assert!(plan.contains("port: 5432 → 5433"), "{plan}");
    stack.ok(
        &layer,
        &["up", "--auto-approve", "--provision-only"],
        5 * MINUTE,
    );
    stack.assert_converged(&layer, "the port change was not applied");
}

/// Issue 12 §2: `observe` took two failed reads for "absent": any error of
/// DescribeDBSubnetGroups made the group look missing (`plan` showed a second create and a
/// replaced database), and a failed DescribeMountTargetSecurityGroups made the mount targets'
/// groups look empty (`plan` showed a change to every mount target). Each is now an error
/// that names the call; the run is throttled on just that call, with one attempt per call.
#[test]
fn aws_like_failed_reads_are_errors_never_absent() {
    let layer = AwsLike::start(json!({}));
    let stack = Stack::new(|s| s);
    stack.ok(
        &layer,
        &["up", "--auto-approve", "--provision-only"],
        5 * MINUTE,
    );
    for (action, code) in [
        ("DescribeDBSubnetGroups", "Throttling"),
        ("DescribeMountTargetSecurityGroups", "ThrottlingException"),
    ] {
        layer.configure(json!({"throttle_share": 1.0, "throttle_actions": [action]}));
        let before = n(&layer.stats(), "throttled");
        let o = stack.run_env(
            &layer,
            &["plan", "--detailed-exitcode", "--provision-only"],
            ("AWS_MAX_ATTEMPTS", "1"),
        );
        assert!(
            n(&layer.stats(), "throttled") > before,
            "{action} was not throttled: {}",
            layer.stats()
        );
        let err = stderr(&o);
        assert_eq!(
            o.status.code(),
            Some(1),
            "a failed {action} was taken for absent:\n{}\n{err}",
            stdout(&o)
        );
        assert!(err.contains(action) && err.contains(code), "{err}");
    }
    layer.calm();
    stack.assert_converged(&layer, "the cloud plan has changes");
}

/// The final DB snapshots of this stack's database, as RDS lists them.
async fn final_snapshots(layer: &AwsLike) -> Vec<String> {
    let rds = aws_sdk_rds::Client::new(&layer.sdk().await);
    let out = rds
        .describe_db_snapshots()
        .send()
        .await
        .expect("DescribeDBSnapshots");
    out.db_snapshots()
        .iter()
        .filter_map(|s| s.db_snapshot_identifier())
        .filter(|id| id.starts_with(&format!("hactl-{NAME}-db-final-")))
        .map(str::to_string)
        .collect()
}

/// Issue 12 §2 data safety: a `database.name` change replaces the database. Without
/// `--allow-data-loss` `plan` and `up` refuse it before anything changes (the database is still
/// there, no snapshot); with it, the database is replaced and a final snapshot of the old one
/// exists. `down` is refused the same way; deletion protection is on until hactl deletes.
#[tokio::test(flavor = "multi_thread")]
async fn aws_like_database_name_change_needs_allow_data_loss() {
    let layer = AwsLike::start(json!({}));
    let stack = Stack::new(|s| s);
    stack.ok(
        &layer,
        &["up", "--auto-approve", "--provision-only"],
        5 * MINUTE,
    );
    let rds = aws_sdk_rds::Client::new(&layer.sdk().await);
    let ident = format!("hactl-{NAME}-db");
    let db = rds
        .describe_db_instances()
        .db_instance_identifier(&ident)
        .send()
        .await
        .expect("the database exists");
    assert_eq!(
        db.db_instances()[0].deletion_protection(),
        Some(true),
        "deletion protection is on"
    );

    let text = std::fs::read_to_string(&stack.file).unwrap();
    std::fs::write(
        &stack.file,
        text.replacen("    name: app\n", "    name: app2\n", 1),
    )
    .unwrap();
    let (o, _) = stack.run(&layer, &["plan"], 2 * MINUTE);
    assert!(!o.status.success(), "plan accepted it: {}", stdout(&o));
    assert!(
        stdout(&o).contains("destroys data"),
        "the plan marks it:\n{}",
        stdout(&o)
    );
    assert!(
        stderr(&o).contains("hactl::aws::data_loss"),
        "{}",
        stderr(&o)
    );
    let (o, _) = stack.run(
        &layer,
        &["up", "--auto-approve", "--provision-only"],
        2 * MINUTE,
    );
    assert!(!o.status.success(), "up accepted it: {}", stdout(&o));
    assert!(
        stderr(&o).contains("`aws_db_instance.main` (replace: db_name changed: app → app2"),
        "{}",
        stderr(&o)
    );
    assert_eq!(counts(&layer.sdk().await, NAME).await.dbs, 1);
    assert!(final_snapshots(&layer).await.is_empty());

    stack.ok(
        &layer,
        &[
            "up",
            "--auto-approve",
            "--provision-only",
            "--allow-data-loss",
        ],
        5 * MINUTE,
    );
    assert_eq!(final_snapshots(&layer).await.len(), 1);
    let db = rds
        .describe_db_instances()
        .db_instance_identifier(&ident)
        .send()
        .await
        .expect("the new database exists");
    assert_eq!(db.db_instances()[0].db_name(), Some("app2"));
    stack.assert_converged(&layer, "the cloud plan has changes");

    let (o, _) = stack.run(&layer, &["down", "--auto-approve"], 2 * MINUTE);
    assert!(!o.status.success(), "down accepted it: {}", stdout(&o));
    assert!(
        stderr(&o).contains("hactl::aws::data_loss"),
        "{}",
        stderr(&o)
    );
    stack.ok(
        &layer,
        &["down", "--auto-approve", "--allow-data-loss"],
        5 * MINUTE,
    );
    assert_eq!(final_snapshots(&layer).await.len(), 2);
    assert_eq!(counts(&layer.sdk().await, NAME).await, Counts::default());
}

/// Issue 12 §2 replace without an outage: a `target_port` change replaces the target group
/// while the listener forwards to it. On main the old group was deleted first and AWS (and moto)
/// answered `ResourceInUse` until the 30-minute limit, with every target deregistered. Now the
/// new group is created, the listener repointed and the targets registered, then the old group
/// goes: `up` converges, one group is left, and the listener forwards to it.
#[tokio::test(flavor = "multi_thread")]
async fn aws_like_target_port_change_repoints_the_listener_first() {
    let layer = AwsLike::start(json!({"not_found_secs": 2, "throttle_share": 0.05, "seed": 7}));
    let stack = Stack::new(|s| s);
    stack.ok(
        &layer,
        &["up", "--auto-approve", "--provision-only"],
        5 * MINUTE,
    );
    let text = std::fs::read_to_string(&stack.file).unwrap();
    std::fs::write(
        &stack.file,
        text.replacen("    target_port: 80\n", "    target_port: 8080\n", 1),
    )
    .unwrap();
    let (plan, _) = stack.ok(&layer, &["plan"], 2 * MINUTE);
    assert!(plan.contains("port changed: 80 → 8080: replace"), "{plan}");
    stack.ok(
        &layer,
        &["up", "--auto-approve", "--provision-only"],
        3 * MINUTE,
    );
    layer.calm();
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(&layer.sdk().await);
    let tgs = elb.describe_target_groups().send().await.unwrap();
    let ours: Vec<_> = tgs
        .target_groups()
        .iter()
        .filter(|t| {
            t.target_group_name()
                .is_some_and(|n| n.starts_with(&format!("hactl-{NAME}-web")))
        })
        .collect();
    assert_eq!(ours.len(), 1, "{ours:?}");
    assert_eq!(ours[0].port(), Some(8080));
    let arn = ours[0].target_group_arn().unwrap();
    let lbs = elb.describe_load_balancers().send().await.unwrap();
    let lb = lbs.load_balancers()[0].load_balancer_arn().unwrap();
    let ls = elb
        .describe_listeners()
        .load_balancer_arn(lb)
        .send()
        .await
        .unwrap();
    let forwards: Vec<&str> = ls
        .listeners()
        .iter()
        .flat_map(|l| l.default_actions())
        .filter_map(|a| a.target_group_arn())
        .collect();
    assert_eq!(forwards, [arn]);
    let health = elb
        .describe_target_health()
        .target_group_arn(arn)
        .send()
        .await
        .unwrap();
    assert_eq!(health.target_health_descriptions().len(), 2);
    stack.assert_converged(&layer, "the cloud plan has changes");
}

/// Issue 12 §2: an `instance_type` change replaces the instances create-before-destroy and one
/// at a time: web[0]'s replacement (launch, register, healthy, deregister, terminate) ends
/// before web[1]'s begins; afterwards the two new instances are the registered targets.
#[tokio::test(flavor = "multi_thread")]
async fn aws_like_instance_type_change_rolls_one_at_a_time() {
    let layer = AwsLike::start(json!({"instance_pending_secs": 1}));
    let stack = Stack::new(|s| s);
    stack.ok(
        &layer,
        &["up", "--auto-approve", "--provision-only"],
        5 * MINUTE,
    );
    let text = std::fs::read_to_string(&stack.file).unwrap();
    std::fs::write(
        &stack.file,
        text.replacen("instance_type: t2.micro", "instance_type: t3.small", 1),
    )
    .unwrap();
    let (o, _) = stack.run(
        &layer,
        &["up", "--auto-approve", "--provision-only"],
        3 * MINUTE,
    );
    let progress = stderr(&o);
    assert!(o.status.success(), "{}\n{progress}", stdout(&o));
    let at = |needle: &str| {
        progress
            .find(needle)
            .unwrap_or_else(|| panic!("no `{needle}` in:\n{progress}"))
    };
    assert!(
        at("aws_instance.web[0]: replaced") < at("aws_instance.web[1]: replacing"),
        "{progress}"
    );
    let ec2 = aws_sdk_ec2::Client::new(&layer.sdk().await);
    let out = ec2
        .describe_instances()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("tag:hactl:stack")
                .values(NAME)
                .build(),
        )
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("instance-state-name")
                .values("running")
                .build(),
        )
        .send()
        .await
        .unwrap();
    let running: Vec<_> = out
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .collect();
    assert_eq!(running.len(), 2);
    assert!(running
        .iter()
        .all(|i| i.instance_type().map(|t| t.as_str()) == Some("t3.small")));
    stack.assert_converged(&layer, "the cloud plan has changes");
}

/// Issue 12 §2 the root disk and IMDSv2: each instance's one block device mapping is on the
/// AMI's RootDeviceName as DescribeImages reports it (main mapped a hard-coded `/dev/xvda`,
/// which on an AMI whose root is `/dev/sda1` attaches a second, billed volume and leaves the root
/// unresized), and the metadata service takes IMDSv2 tokens only, with a hop limit of 2.
/// IMDSv1 turned back on by hand is planned as an in-place update and repaired by `up`.
#[tokio::test(flavor = "multi_thread")]
async fn aws_like_root_device_from_the_ami_and_imdsv2_only() {
    let layer = AwsLike::start(json!({}));
    let stack = Stack::new(|s| s);
    stack.ok(
        &layer,
        &["up", "--auto-approve", "--provision-only"],
        5 * MINUTE,
    );
    let ec2 = aws_sdk_ec2::Client::new(&layer.sdk().await);
    let image = ec2
        .describe_images()
        .image_ids("ami-1e749f67")
        .send()
        .await
        .unwrap();
    let root = image.images()[0].root_device_name().unwrap().to_string();
    let instances = || async {
        let out = ec2
            .describe_instances()
            .filters(
                aws_sdk_ec2::types::Filter::builder()
                    .name("tag:hactl:stack")
                    .values(NAME)
                    .build(),
            )
            .send()
            .await
            .unwrap();
        out.reservations()
            .iter()
            .flat_map(|r| r.instances())
            .cloned()
            .collect::<Vec<_>>()
    };
    let all = instances().await;
    assert_eq!(all.len(), 2);
    for i in &all {
        let devices: Vec<&str> = i
            .block_device_mappings()
            .iter()
            .filter_map(|b| b.device_name())
            .collect();
        assert_eq!(devices, [root.as_str()], "{:?}", i.instance_id());
        let m = i.metadata_options().expect("metadata options");
        assert_eq!(m.http_tokens().map(|t| t.as_str()), Some("required"));
        assert_eq!(m.http_put_response_hop_limit(), Some(2));
    }
    let id = all[0].instance_id().unwrap();
    ec2.modify_instance_metadata_options()
        .instance_id(id)
        .http_tokens(aws_sdk_ec2::types::HttpTokensState::Optional)
        .send()
        .await
        .unwrap();
    let (plan, _) = stack.ok(&layer, &["plan"], 2 * MINUTE);
    assert!(
        plan.contains("metadata.http_tokens: optional → required"),
        "{plan}"
    );
    stack.ok(
        &layer,
        &["up", "--auto-approve", "--provision-only"],
        5 * MINUTE,
    );
    stack.assert_converged(&layer, "the cloud plan has changes");
    assert_eq!(
        instances().await.len(),
        2,
        "repaired in place, not replaced"
    );
}

/// The journal's JSON (`hactl state journal --json`): its entries and those still in flight.
fn journal(stack: &Stack, layer: &AwsLike) -> (Vec<Value>, Vec<Value>) {
    let (o, _) = stack.run(layer, &["state", "journal", "--json"], MINUTE);
    assert!(o.status.success(), "state journal: {}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).expect("one JSON document");
    let list = |k: &str| v[k].as_array().cloned().unwrap_or_default();
    (list("entries"), list("in_flight"))
}

/// Issue 11 and 12 acceptance: `up` of seed 003 from nothing, SIGKILLed at 10 random points
/// under the AWS-like layer's acceptance faults (a kill lands between a call's intent and its
/// answer, in a wait, or between two changes), then one `up` converges: every resource exactly
/// once by its tags, nothing untagged besides (0 duplicates, 0 orphans, counted through the
/// API), a second `plan` empty, the journal showing the runs that adopted what a killed run
/// left in flight and nothing in flight after. The kill points come from `HACTL_KILL_SEED`
/// (default: the clock), printed in every failure.
#[tokio::test(flavor = "multi_thread")]
async fn aws_like_sigkill_at_ten_random_points_then_up_converges() {
    let layer = AwsLike::start(json!({}));
    let conf = layer.sdk().await;
    let before = everything(&conf).await;
    layer.configure(acceptance_settings());
    let stack = Stack::new(|s| s);
    let seed: u64 = std::env::var("HACTL_KILL_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(12)
        });
    // xorshift64. A point: `delay` (0 to 2 s) after the run's `nth` (1 to 3) change started,
    // which lands in a call, in a wait for readiness, or between two changes. A run that ends
    // before its point is not a kill: runs go on until 10 kills landed.
    let mut x = seed ^ 0x9E37_79B9_7F4A_7C15; // xorshift's state is never 0
    let mut next = move |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    let up = ["up", "--auto-approve", "--provision-only"];
    let mut points = Vec::new();
    let mut killed = 0;
    while killed < 10 && points.len() < 30 {
        let (nth, delay) = (1 + next(3) as usize, Duration::from_millis(next(2000)));
        let ended = stack.killed_after(&layer, &up, nth, delay);
        // A run between two kills that ends by itself must have succeeded: what a killed
        // run left never makes the next one fail.
        if let Some((code, tail)) = &ended {
            assert_eq!(
                *code,
                Some(0),
                "a run after {killed} kill(s) failed (HACTL_KILL_SEED={seed}):\n{tail}"
            );
        }
        points.push((nth, delay, ended.is_none()));
        killed += usize::from(ended.is_none());
    }
    let why = format!("HACTL_KILL_SEED={seed}: (nth change, delay, killed) {points:?}");
    assert_eq!(killed, 10, "the kills did not land mid-run ({why})");
    let (adopting, _) = journal(&stack, &layer);
    let adopted = adopting.iter().filter(|e| e["event"] == "adopted").count();
    assert!(
        adopted > 0,
        "no run adopted an intent a killed run left ({why}):\n{adopting:#?}"
    );

    stack.ok(&layer, &up, 5 * MINUTE);
    stack.assert_converged(
        &layer,
        &format!("the plan after the kills has changes ({why})"),
    );
    let (entries, in_flight) = journal(&stack, &layer);
    assert!(
        in_flight.is_empty(),
        "still in flight ({why}): {in_flight:#?}"
    );
    let runs: std::collections::BTreeSet<&str> =
        entries.iter().filter_map(|e| e["run"].as_str()).collect();
    // Runs killed before their first change journal nothing; the others and the last do.
    assert!(runs.len() >= 2, "{} runs journaled ({why})", runs.len());
    layer.calm();
    assert_eq!(
        counts(&conf, NAME).await,
        full(),
        "a duplicate or a missing resource ({why})"
    );
    assert_eq!(
        everything(&conf).await,
        before.clone() + full(),
        "an orphan: a resource of the account that is not the stack's ({why})"
    );
    stack.ok(
        &layer,
        &["down", "--auto-approve", "--allow-data-loss"],
        5 * MINUTE,
    );
    assert_eq!(
        everything(&conf).await,
        before,
        "down left something ({why})"
    );
    // What `--nocapture` shows: the points and how many intents were adopted.
    eprintln!(
        "{why}; {adopted} adopted intent(s); {} journal runs",
        runs.len()
    );
}

/// Issue 12 §2 scale of a real account: the region-wide listings are read to their last page.
/// With 51 other load balancers and 11 other file systems in the account (moto pages load
/// balancers by 50 and file systems by 10), the stack's own are on the second page: read as
/// one page, the second `plan` wanted to create them again (and every `up` did).
#[tokio::test(flavor = "multi_thread")]
async fn aws_like_busy_account_is_read_to_the_last_page() {
    let layer = AwsLike::start(json!({}));
    let conf = layer.sdk().await;
    let ec2 = aws_sdk_ec2::Client::new(&conf);
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(&conf);
    let efs = aws_sdk_efs::Client::new(&conf);
    let vpc = ec2
        .create_vpc()
        .cidr_block("10.98.0.0/16")
        .send()
        .await
        .unwrap();
    let vpc = vpc.vpc().unwrap().vpc_id().unwrap().to_string();
    let mut subnets = Vec::new();
    for (i, zone) in ["us-east-1a", "us-east-1b"].iter().enumerate() {
        let s = ec2
            .create_subnet()
            .vpc_id(&vpc)
            .cidr_block(format!("10.98.{}.0/24", i + 1))
            .availability_zone(*zone)
            .send()
            .await
            .unwrap();
        subnets.push(s.subnet().unwrap().subnet_id().unwrap().to_string());
    }
    for i in 0..51 {
        elb.create_load_balancer()
            .name(format!("other-{i}"))
            .set_subnets(Some(subnets.clone()))
            .send()
            .await
            .unwrap();
    }
    for i in 0..11 {
        efs.create_file_system()
            .creation_token(format!("other-{i}"))
            .send()
            .await
            .unwrap();
    }
    let stack = Stack::new(|s| s);
    stack.ok(
        &layer,
        &["up", "--auto-approve", "--provision-only"],
        5 * MINUTE,
    );
    stack.assert_converged(&layer, "the stack's own were not read");
    assert_eq!(counts(&conf, NAME).await, full());
}

/// Issue 11 item 4 / issue 12 §2: a long wait says what AWS reports, not only what hactl does:
/// the database's progress events (`--json-events`, every 10 s) carry RDS's own status,
/// `creating` and then `backing-up` (the layer's last quarter of 24 s), with the time so far.
#[test]
fn aws_like_long_waits_report_the_aws_status() {
    let layer = AwsLike::start(json!({"rds_ready_secs": 24}));
    let stack = Stack::new(|s| s);
    let (o, _) = stack.run(
        &layer,
        &["--json-events", "up", "--auto-approve", "--provision-only"],
        5 * MINUTE,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let db: Vec<(String, u64)> = stdout(&o)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["type"] == "progress" && e["addr"] == "aws_db_instance.main")
        .map(|e| {
            let status = e["status"].as_str().unwrap_or_default().to_string();
            (status, e["elapsed_ms"].as_u64().unwrap_or_default())
        })
        .collect();
    let statuses: Vec<&str> = db.iter().map(|(s, _)| s.as_str()).collect();
    assert!(statuses.contains(&"creating"), "{db:?}");
    assert!(statuses.contains(&"backing-up"), "{db:?}");
    assert!(db.iter().all(|(_, ms)| *ms >= 9_000), "{db:?}");
}
