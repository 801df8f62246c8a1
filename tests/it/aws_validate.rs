//! Issue 12 §2, "validate before spending minutes", on moto: what only the account or the
//! vault can answer (the AMI and its architecture, secrets that break RDS's or EC2's rules)
//! is refused by `plan` and by `up` before anything is created; the stack's region wins over
//! `AWS_REGION`; an HTTPS listener is built with its certificate. Every check reads AWS through
//! the SDK.

use std::process::Command;

use aws_sdk_ec2::types::Filter;

use crate::aws::{counts, rt, Counts, Moto, NAME};
use crate::aws_users::{fixture, nothing_created, refused};
use crate::support::{stderr, stdout};

/// An AMI that does not exist in the region: RunInstances would refuse it after the VPC, the
/// balancer, EFS and RDS were created. `plan` and `up` refuse first, at `hosts.ami`.
#[test]
fn aws_unknown_ami_is_refused_before_anything_is_created() {
    let moto = Moto::start();
    let rt = rt();
    let conf = rt.block_on(moto.sdk());
    let w = fixture(|t| t.replace("ami: ami-1e749f67", "ami: ami-0deadbeef0deadbee"));
    refused(
        &w,
        &moto,
        "preflight_unknown_ami",
        "21:10",
        &[
            "hactl::aws::ami",
            "AMI `ami-0deadbeef0deadbee` does not exist in us-east-1",
        ],
    );
    rt.block_on(nothing_created(&conf));
}

/// An x86_64 image on an arm64 type (moto's catalogue: ami-1e749f67 is x86_64, t4g.small runs
/// arm64 only) is refused; moto's arm64 image on the same type plans.
#[test]
fn aws_ami_architecture_must_fit_the_instance_type() {
    let moto = Moto::start();
    let rt = rt();
    let conf = rt.block_on(moto.sdk());
    let arm = |t: String| t.replace("instance_type: t2.micro", "instance_type: t4g.small");
    let w = fixture(arm);
    refused(
        &w,
        &moto,
        "preflight_ami_architecture",
        "21:10",
        &[
            "hactl::aws::ami",
            "AMI `ami-1e749f67` is built for x86_64, but instance type `t4g.small` runs arm64",
        ],
    );
    rt.block_on(nothing_created(&conf));
    let w = fixture(|t| arm(t).replace("ami-1e749f67", "ami-0e9271c829888680e"));
    w.ok(&moto, &["plan"]);
}

/// The secrets as the vault holds them: an ECDSA public key (EC2 imports RSA and ED25519
/// only) and a 4-character database password (RDS asks for 8 or more) are both refused at
/// once, before anything is created, and the refusal never quotes the password.
#[test]
fn aws_secrets_that_break_rds_and_ec2_rules_are_refused() {
    let moto = Moto::start();
    let rt = rt();
    let conf = rt.block_on(moto.sdk());
    let w = fixture(|t| {
        t.replace(
            "    ami: ami-1e749f67\n",
            "    ami: ami-1e749f67\n    public_key: {secret: ssh_public_key}\n",
        )
    });
    let key = w.dir.path().join("id_ecdsa");
    let o = Command::new("ssh-keygen")
        .args(["-q", "-t", "ecdsa", "-N", "", "-C", "aws-web-test", "-f"])
        .arg(&key)
        .output()
        .expect("ssh-keygen runs");
    assert!(o.status.success(), "ssh-keygen: {}", stderr(&o));
    w.set_secret(
        "ssh_public_key",
        &std::fs::read(key.with_extension("pub")).unwrap(),
    );
    w.set_secret("db_password", b"Pw@1");
    refused(
        &w,
        &moto,
        "preflight_secrets",
        "22:17",
        &[
            "the hosts' public key (secret `ssh_public_key`) is an ECDSA key",
            "the database password (secret `db_password`) has 4 characters;",
        ],
    );
    let o = w.run(&moto, &["plan"]);
    assert!(!stderr(&o).contains("Pw@1"), "{}", stderr(&o));
    rt.block_on(nothing_created(&conf));
}

/// Issue 12 §2: `AWS_REGION=eu-west-1` in the environment made a us-east-1 stack build in
/// eu-west-1 (here: refused there, since us-east-1a is no zone of eu-west-1). The stack's
/// region wins, the variable is a located warning, and everything is in us-east-1.
#[test]
fn aws_region_env_var_is_a_warning_and_the_stack_region_wins() {
    let moto = Moto::start();
    let rt = rt();
    let conf = rt.block_on(moto.sdk());
    let w = fixture(|t| t);
    for args in [
        &["plan"][..],
        &["up", "--auto-approve", "--provision-only"][..],
    ] {
        let o = w
            .cmd(&moto, args)
            .env("AWS_REGION", "eu-west-1")
            .output()
            .expect("hactl runs");
        let err = stderr(&o);
        assert!(o.status.success(), "{args:?}:\n{}{err}", stdout(&o));
        assert!(
            err.contains(
                "AWS_REGION=eu-west-1 in the environment is ignored: this stack is in us-east-1"
            ),
            "{args:?}: no warning in\n{err}"
        );
        assert!(
            err.contains("[stacks/seed-003-aws-web.yaml:12:11]"),
            "{args:?}: the warning does not point at `aws.region`:\n{err}"
        );
    }
    assert_ne!(rt.block_on(counts(&conf, NAME)), Counts::default());
    let eu = rt.block_on(
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(&moto.url)
            .region(aws_config::Region::new("eu-west-1"))
            .credentials_provider(aws_sdk_ec2::config::Credentials::new(
                "testing", "testing", None, None, "test",
            ))
            .load(),
    );
    assert_eq!(rt.block_on(counts(&eu, NAME)), Counts::default());
    let o = w
        .cmd(&moto, &["plan", "--detailed-exitcode", "--provision-only"])
        .env("AWS_DEFAULT_REGION", "eu-west-1")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(
        stderr(&o).contains("AWS_DEFAULT_REGION=eu-west-1"),
        "{}",
        stderr(&o)
    );
}

/// An ACM certificate in moto's us-east-1 (through boto3, which moto's own tests use).
fn acm_certificate(moto: &Moto) -> String {
    let script = format!(
        "import boto3\n\
         c = boto3.client('acm', endpoint_url='{}', region_name='us-east-1',\n\
             aws_access_key_id='testing', aws_secret_access_key='testing')\n\
         print(c.request_certificate(DomainName='shop.example.com')['CertificateArn'])\n",
        moto.url
    );
    let o = Command::new("python3")
        .args(["-c", &script])
        .output()
        .expect("python3 runs");
    assert!(o.status.success(), "boto3: {}", stderr(&o));
    stdout(&o).trim().to_string()
}

/// Issue 12 §2: `HTTPS` was refused (no way to name a certificate). With `certificate_arn` the
/// listener is built as HTTPS with that certificate, and the next plan is empty (the
/// certificate is read back).
#[test]
fn aws_https_listener_is_built_with_its_certificate() {
    let moto = Moto::start();
    let rt = rt();
    let conf = rt.block_on(moto.sdk());
    let arn = acm_certificate(&moto);
    let w = fixture(|t| {
        t.replace(
            "      - port: 80\n        protocol: HTTP\n",
            &format!(
                "      - port: 443\n        protocol: HTTPS\n        certificate_arn: {arn}\n"
            ),
        )
    });
    let plan = w.ok(&moto, &["plan"]);
    assert!(plan.contains("aws_lb_listener.port_443"), "{plan}");
    w.ok(&moto, &["up", "--auto-approve", "--provision-only"]);
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(&conf);
    let lbs = rt.block_on(elb.describe_load_balancers().send()).unwrap();
    let lb = lbs.load_balancers()[0]
        .load_balancer_arn()
        .unwrap()
        .to_string();
    let ls = rt
        .block_on(elb.describe_listeners().load_balancer_arn(lb).send())
        .unwrap();
    let l = &ls.listeners()[0];
    assert_eq!(l.protocol().map(|p| p.as_str()), Some("HTTPS"));
    assert_eq!(l.port(), Some(443));
    assert_eq!(
        l.certificates()
            .iter()
            .filter_map(|c| c.certificate_arn())
            .collect::<Vec<_>>(),
        [arn.as_str()]
    );
    // The balancer's group is open on 443 (the listener's port).
    let ec2 = aws_sdk_ec2::Client::new(&conf);
    let g = rt
        .block_on(
            ec2.describe_security_groups()
                .filters(
                    Filter::builder()
                        .name("group-name")
                        .values(format!("hactl-{NAME}-lb"))
                        .build(),
                )
                .send(),
        )
        .unwrap();
    assert!(
        g.security_groups()[0]
            .ip_permissions()
            .iter()
            .any(|p| p.from_port() == Some(443)),
        "{g:?}"
    );
    let o = w.run(&moto, &["plan", "--detailed-exitcode", "--provision-only"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
}
