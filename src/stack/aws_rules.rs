//! AWS's rules for single values, as pure functions over text: `validate` applies them to what
//! the stack file holds, and `plan` / `up` (`provider::aws::preflight`) to what the vault
//! holds, before anything is created. A value that breaks a rule is refused in the same words
//! wherever it is written. Each function names the AWS document its rule comes from.
//!
//! Messages never quote a secret (a password, a public key): they say what is wrong with it.

use base64::Engine as _;

/// The database engines hactl builds (`aws.database.engine`).
pub const DB_ENGINES: [&str; 3] = ["postgres", "mysql", "mariadb"];

/// `DBName` of CreateDBInstance (RDS API Reference, CreateDBInstance, `DBName`): RDS for
/// PostgreSQL "must contain 1 to 63 letters, numbers, or underscores", RDS for MySQL and
/// MariaDB "1 to 64 letters or numbers"; for all three "must begin with a letter. Subsequent
/// characters can be letters, underscores, or digits (0-9)". `Err` says what is wrong.
pub fn db_name(engine: &str, name: &str) -> Result<(), String> {
    let max = if engine == "postgres" { 63 } else { 64 };
    identifier(name, max, "a database name")
}

/// `MasterUsername` of CreateDBInstance (RDS API Reference: "must be 1 to 16 letters, numbers,
/// or underscores. First character must be a letter. Can't be a reserved word for the chosen
/// database engine"; `rdsadmin` is RDS's own user on every engine).
pub fn db_username(name: &str) -> Result<(), String> {
    identifier(name, 16, "a master username")?;
    if name.eq_ignore_ascii_case("rdsadmin") {
        return Err(
            "is RDS's own administrative user (`rdsadmin`), reserved on every engine".into(),
        );
    }
    Ok(())
}

/// The longest master password of `engine` (RDS API Reference, CreateDBInstance,
/// `MasterUserPassword`: "RDS for MariaDB - Must contain from 8 to 41 characters", the same
/// for MySQL, "RDS for PostgreSQL - Must contain from 8 to 128 characters").
pub fn db_password_max(engine: &str) -> usize {
    if engine == "postgres" {
        128
    } else {
        41
    }
}

/// `MasterUserPassword` of CreateDBInstance (RDS API Reference): 8 characters up to
/// [`db_password_max`]; "can include any printable ASCII character except `/`, `"`, or `@`"
/// — and no space, which RDS's own InvalidParameterValue names too ("Only printable ASCII
/// characters besides '/', '@', '"', ' ' may be used"). The message never quotes the password.
pub fn db_password(engine: &str, password: &str) -> Result<(), String> {
    let n = password.chars().count();
    let max = db_password_max(engine);
    if n < 8 {
        return Err(format!(
            "has {n} characters; RDS asks for at least 8 (and at most {max} for {engine})"
        ));
    }
    if n > max {
        return Err(format!(
            "has {n} characters; RDS for {engine} takes at most {max}"
        ));
    }
    if password
        .chars()
        .any(|c| !c.is_ascii_graphic() || matches!(c, '/' | '"' | '@'))
    {
        return Err(
            "has a character RDS refuses: only printable ASCII is allowed, without `/`, `\"`, `@` and spaces"
                .into(),
        );
    }
    Ok(())
}

/// A letter, then letters, digits and underscores, 1 to `max` characters.
fn identifier(name: &str, max: usize, what: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let Some(first) = chars.next() else {
        return Err(format!("is empty; {what} is 1 to {max} characters"));
    };
    if !first.is_ascii_alphabetic() {
        return Err(format!("does not begin with a letter, as {what} must"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_'))
    {
        return Err(format!(
            "has `{}`; {what} takes letters, digits and underscores only",
            c.escape_default()
        ));
    }
    let n = name.chars().count();
    if n > max {
        return Err(format!("has {n} characters; {what} takes at most {max}"));
    }
    Ok(())
}

/// What an SSH public key EC2 can import is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    Ed25519,
    /// With the modulus size in bits.
    Rsa(usize),
}

/// An SSH public key as ImportKeyPair takes it from hactl: one OpenSSH line,
/// `ssh-ed25519 AAAA… comment` or `ssh-rsa AAAA… comment` (Amazon EC2 User Guide, "Create a
/// key pair using a third-party tool and import the public key": RSA and ED25519 keys only;
/// EC2 refuses DSA and ECDSA keys; RSA of 1024 bits or more). The key data is decoded and
/// must be a key of the type its line names. EC2 only says so after the VPC, the gateway and
/// the file system exist; this says it first.
pub fn ec2_public_key(text: &str) -> Result<KeyType, String> {
    let text = text.trim();
    if text.contains("PRIVATE KEY") {
        return Err("is a private key: give EC2 the public half (the `.pub` file)".into());
    }
    let lines = text.lines().filter(|l| !l.trim().is_empty()).count();
    if text.starts_with("---- BEGIN SSH2 PUBLIC KEY") {
        return Err("is in the RFC 4716 (SSH2) format; give the OpenSSH line (`ssh-keygen -i -f KEY` converts it)".into());
    }
    if lines != 1 {
        return Err(format!(
            "has {lines} lines; a public key is one line (`ssh-ed25519 AAAA… comment`)"
        ));
    }
    let mut fields = text.split_whitespace();
    let kind = fields.next().unwrap_or_default();
    match kind {
        "ssh-ed25519" | "ssh-rsa" => {}
        "ssh-dss" => return Err("is a DSA key; EC2 imports RSA and ED25519 keys only".into()),
        k if k.starts_with("ecdsa-sha2-") => {
            return Err(format!(
                "is an ECDSA key (`{k}`); EC2 imports RSA and ED25519 keys only"
            ))
        }
        k if k.starts_with("sk-") => {
            return Err(format!(
                "is a security-key (FIDO) key (`{k}`); EC2 imports RSA and ED25519 keys only"
            ))
        }
        _ => {
            return Err(
                "does not start with a key type: one `ssh-ed25519 AAAA… comment` or `ssh-rsa AAAA… comment` line"
                    .into(),
            )
        }
    }
    let Some(data) = fields.next() else {
        return Err(format!("has no key data after `{kind}`"));
    };
    let blob = base64::engine::general_purpose::STANDARD
        .decode(data)
        .map_err(|_| format!("has key data after `{kind}` that is not base64"))?;
    let mut r = Reader(&blob);
    let inner = r
        .string()
        .ok_or_else(|| format!("has key data after `{kind}` that is not an SSH key"))?;
    if inner != kind.as_bytes() {
        return Err(format!(
            "says `{kind}` but its key data is a `{}` key",
            String::from_utf8_lossy(inner).escape_default()
        ));
    }
    if kind == "ssh-ed25519" {
        match r.string() {
            Some(k) if k.len() == 32 => Ok(KeyType::Ed25519),
            _ => Err("has ED25519 key data of the wrong length (not 32 bytes)".into()),
        }
    } else {
        let (Some(_e), Some(n)) = (r.string(), r.string()) else {
            return Err("has RSA key data without its exponent and modulus".into());
        };
        let n = match n.iter().position(|b| *b != 0) {
            Some(i) => &n[i..],
            None => &[][..],
        };
        let bits = match n.first() {
            Some(b) => (n.len() - 1) * 8 + (8 - b.leading_zeros() as usize),
            None => 0,
        };
        if bits < 1024 {
            return Err(format!(
                "is a {bits}-bit RSA key; EC2 imports RSA keys of 1024 bits or more (2048 or more is wise)"
            ));
        }
        Ok(KeyType::Rsa(bits))
    }
}

/// Reads SSH wire-format strings (RFC 4251 §5: a big-endian u32 length, then the bytes).
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn string(&mut self) -> Option<&'a [u8]> {
        let len = u32::from_be_bytes(self.0.get(..4)?.try_into().ok()?) as usize;
        let s = self.0.get(4..4 + len)?;
        self.0 = &self.0[4 + len..];
        Some(s)
    }
}

/// A listener certificate for ELB (`Certificates` of CreateListener): an ACM certificate
/// ARN, `arn:PARTITION:acm:REGION:ACCOUNT:certificate/ID`, or an IAM server certificate,
/// `arn:PARTITION:iam::ACCOUNT:server-certificate/NAME` (ELB User Guide, "SSL certificates":
/// ACM or IAM). An ACM certificate must be in the balancer's region (`region`): ACM
/// certificates are regional and ELB uses those of its own region only.
pub fn certificate_arn(arn: &str, region: &str) -> Result<(), String> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let [prefix, partition, service, cert_region, account, resource] = parts[..] else {
        return Err("is not an ARN (`arn:aws:acm:REGION:ACCOUNT:certificate/ID`)".into());
    };
    if prefix != "arn" || !partition.starts_with("aws") {
        return Err("is not an ARN (`arn:aws:acm:REGION:ACCOUNT:certificate/ID`)".into());
    }
    if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "has `{account}` where the 12-digit account id goes"
        ));
    }
    match service {
        "acm" => {
            if resource.strip_prefix("certificate/").is_none_or(str::is_empty) {
                return Err("is an ACM ARN but not of a certificate (`…:certificate/ID`)".into());
            }
            if cert_region != region {
                return Err(format!(
                    "is an ACM certificate of {cert_region}, but the balancer is in {region}; ELB takes certificates of its own region"
                ));
            }
            Ok(())
        }
        "iam" => {
            if resource
                .strip_prefix("server-certificate/")
                .is_none_or(str::is_empty)
            {
                return Err(
                    "is an IAM ARN but not of a server certificate (`…:server-certificate/NAME`)"
                        .into(),
                );
            }
            Ok(())
        }
        other => Err(format!(
            "is an ARN of `{other}`; a listener takes an ACM (`acm`) or IAM server (`iam`) certificate"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real ed25519 public key (ssh-keygen output; the private half was thrown away).
    const ED25519: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDtUPqfnGP1SapMS0lycSZck7k47qcxH6DucvdH0JY1y test@example";

    fn ssh_blob(parts: &[&[u8]]) -> String {
        let mut out = Vec::new();
        for p in parts {
            out.extend_from_slice(&(p.len() as u32).to_be_bytes());
            out.extend_from_slice(p);
        }
        base64::engine::general_purpose::STANDARD.encode(out)
    }

    #[test]
    fn ec2_imports_one_rsa_or_ed25519_line_only() {
        assert_eq!(ec2_public_key(ED25519), Ok(KeyType::Ed25519));
        assert_eq!(
            ec2_public_key(&format!("\n{ED25519}\n")),
            Ok(KeyType::Ed25519)
        );
        let mut n = vec![0u8];
        n.extend(std::iter::repeat_n(0xffu8, 256));
        let rsa = format!("ssh-rsa {} me", ssh_blob(&[b"ssh-rsa", &[1, 0, 1], &n]));
        assert_eq!(ec2_public_key(&rsa), Ok(KeyType::Rsa(2048)));
        let small = format!("ssh-rsa {}", ssh_blob(&[b"ssh-rsa", &[3], &[0x7f; 64]]));
        assert!(ec2_public_key(&small).unwrap_err().contains("511-bit"));
        for (text, says) in [
            ("ecdsa-sha2-nistp256 AAAA x", "ECDSA"),
            ("ssh-dss AAAA x", "DSA"),
            ("sk-ssh-ed25519@openssh.com AAAA x", "security-key"),
            (
                "-----BEGIN OPENSSH PRIVATE KEY-----\nb3Bl\n-----END OPENSSH PRIVATE KEY-----",
                "private key",
            ),
            (
                "---- BEGIN SSH2 PUBLIC KEY ----\nAAAA\n---- END SSH2 PUBLIC KEY ----",
                "RFC 4716",
            ),
            ("ssh-ed25519", "no key data"),
            ("ssh-ed25519 !!!", "not base64"),
            ("AAAAC3NzaC1lZDI1NTE5AAAAIGi1", "key type"),
            ("from=\"10.0.0.1\" ssh-ed25519 AAAA", "key type"),
        ] {
            let e = ec2_public_key(text).unwrap_err();
            assert!(e.contains(says), "{text}: {e}");
        }
        let two = format!("{ED25519}\n{ED25519}");
        assert!(ec2_public_key(&two).unwrap_err().contains("2 lines"));
        // The line says ed25519, the data is an RSA key.
        let lie = rsa.replacen("ssh-rsa", "ssh-ed25519", 1);
        assert!(ec2_public_key(&lie)
            .unwrap_err()
            .contains("is a `ssh-rsa` key"));
        let short = format!("ssh-ed25519 {}", ssh_blob(&[b"ssh-ed25519", &[1; 31]]));
        assert!(ec2_public_key(&short).unwrap_err().contains("wrong length"));
    }

    #[test]
    fn rds_names_per_engine() {
        assert!(db_name("postgres", "app").is_ok());
        assert!(db_name("mysql", "app_2").is_ok());
        assert!(db_name("postgres", &"a".repeat(63)).is_ok());
        assert!(db_name("postgres", &"a".repeat(64))
            .unwrap_err()
            .contains("at most 63"));
        assert!(db_name("mysql", &"a".repeat(64)).is_ok());
        assert!(db_name("mariadb", &"a".repeat(65))
            .unwrap_err()
            .contains("at most 64"));
        assert!(db_name("postgres", "my-app").unwrap_err().contains("`-`"));
        assert!(db_name("postgres", "1app").unwrap_err().contains("letter"));
        assert!(db_name("postgres", "_app").unwrap_err().contains("letter"));
        assert!(db_name("postgres", "").unwrap_err().contains("empty"));
        assert!(db_username("app").is_ok());
        assert!(db_username(&"u".repeat(16)).is_ok());
        assert!(db_username(&"u".repeat(17))
            .unwrap_err()
            .contains("at most 16"));
        assert!(db_username("rdsadmin").unwrap_err().contains("reserved"));
        assert!(db_username("app-user").is_err());
    }

    #[test]
    fn rds_passwords_per_engine() {
        assert!(db_password("postgres", "moto-only-pw").is_ok());
        assert!(db_password("postgres", "short")
            .unwrap_err()
            .contains("at least 8"));
        assert!(db_password("postgres", &"p".repeat(128)).is_ok());
        assert!(db_password("postgres", &"p".repeat(129)).is_err());
        assert!(db_password("mysql", &"p".repeat(41)).is_ok());
        let e = db_password("mariadb", &"p".repeat(42)).unwrap_err();
        assert!(e.contains("at most 41"), "{e}");
        for bad in [
            "pass/word",
            "pass\"word",
            "pass@word",
            "pass word",
            "pässword1",
            "pass\tword",
        ] {
            let e = db_password("postgres", bad).unwrap_err();
            assert!(!e.contains(bad), "the message quotes the password: {e}");
        }
    }

    #[test]
    fn listener_certificates_are_acm_of_the_region_or_iam() {
        let acm = "arn:aws:acm:eu-west-1:123456789012:certificate/0a1b2c3d";
        assert!(certificate_arn(acm, "eu-west-1").is_ok());
        assert!(certificate_arn(acm, "us-east-1")
            .unwrap_err()
            .contains("of eu-west-1"));
        assert!(certificate_arn(
            "arn:aws:iam::123456789012:server-certificate/web",
            "us-east-1"
        )
        .is_ok());
        assert!(certificate_arn(
            "arn:aws-cn:acm:cn-north-1:123456789012:certificate/x",
            "cn-north-1"
        )
        .is_ok());
        for bad in [
            "certificate/0a1b",
            "arn:aws:acm:eu-west-1:1234:certificate/x",
            "arn:aws:acm:eu-west-1:123456789012:key/x",
            "arn:aws:s3:::bucket:123456789012:x",
            "arn:aws:iam::123456789012:role/x",
        ] {
            assert!(certificate_arn(bad, "eu-west-1").is_err(), "{bad}");
        }
    }
}
