//! AWS SDK clients: the standard credential chain (`AWS_PROFILE`, environment, files,
//! instance role), `AWS_ENDPOINT_URL` (tests reach moto through it), the stack's region unless
//! `AWS_REGION` overrides it, and the SDK's standard retry mode (`AWS_RETRY_MODE=adaptive`
//! selects adaptive), all over rustls.

use aws_config::{BehaviorVersion, Region};

/// The shared SDK configuration for `region`.
pub async fn sdk_config(region: &str) -> aws_config::SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if std::env::var_os("AWS_REGION").is_none() && std::env::var_os("AWS_DEFAULT_REGION").is_none()
    {
        loader = loader.region(Region::new(region.to_string()));
    }
    loader.load().await
}

/// One client per service, cheap to clone (they share one connection pool each).
#[derive(Clone)]
pub struct Clients {
    pub ec2: aws_sdk_ec2::Client,
    pub elb: aws_sdk_elasticloadbalancingv2::Client,
    pub efs: aws_sdk_efs::Client,
    pub rds: aws_sdk_rds::Client,
    pub region: String,
}

impl Clients {
    pub async fn new(region: &str) -> Clients {
        let conf = sdk_config(region).await;
        Clients {
            ec2: aws_sdk_ec2::Client::new(&conf),
            elb: aws_sdk_elasticloadbalancingv2::Client::new(&conf),
            efs: aws_sdk_efs::Client::new(&conf),
            rds: aws_sdk_rds::Client::new(&conf),
            region: conf
                .region()
                .map(|r| r.to_string())
                .unwrap_or_else(|| region.to_string()),
        }
    }
}
