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

use crate::aws::{counts, Counts};
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

    fn ok(&self, layer: &AwsLike, args: &[&str], limit: Duration) -> (String, Duration) {
        let (o, took) = self.run(layer, args, limit);
        (crate::support::succeeded(args, &o), took)
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

/// Issue 12's acceptance run: `up` from nothing converges under every fault at once, a second
/// `plan` is empty, and `down` (through lingering ENIs) leaves nothing tagged.
#[tokio::test(flavor = "multi_thread")]
async fn aws_like_up_plan_down_converge_under_faults() {
    let layer = AwsLike::start(acceptance_settings());
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

    let (o, _) = stack.run(
        &layer,
        &["plan", "--detailed-exitcode", "--provision-only"],
        2 * MINUTE,
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "the second plan has changes:\n{}\n{}",
        stdout(&o),
        stderr(&o)
    );

    stack.ok(&layer, &["down", "--auto-approve"], 5 * MINUTE);
    layer.calm();
    assert_eq!(counts(&layer.sdk().await, NAME).await, Counts::default());
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
    stack.ok(&layer, &["down", "--auto-approve"], 5 * MINUTE);
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
    let (o, _) = stack.run(
        &layer,
        &["plan", "--detailed-exitcode", "--provision-only"],
        2 * MINUTE,
    );
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
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
    let (o, _) = stack.run(
        &layer,
        &["plan", "--detailed-exitcode", "--provision-only"],
        2 * MINUTE,
    );
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
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
    let (o, _) = stack.run(
        &layer,
        &["plan", "--detailed-exitcode", "--provision-only"],
        2 * MINUTE,
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "a creating database planned a change:\n{}",
        stdout(&o)
    );
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
    let (o, _) = stack.run(
        &layer,
        &["plan", "--detailed-exitcode", "--provision-only"],
        2 * MINUTE,
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "the port change was not applied:\n{}",
        stdout(&o)
    );
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
    // Cloud only: the instances are moto's, with no host behind them to plan files on.
    let (o, _) = stack.run(
        &layer,
        &["plan", "--detailed-exitcode", "--provision-only"],
        2 * MINUTE,
    );
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
}
