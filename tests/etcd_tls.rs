//! The etcd store over TLS with client certificates, and with user/password authentication,
//! against a real etcd started by the test; certificates are made by the test with openssl.
#![cfg(feature = "etcd")]

mod common;
mod etcd_common;

use std::path::Path;
use std::process::{Command, Output, Stdio};

use etcd_common::Etcd;

const BIN: &str = env!("CARGO_BIN_EXE_tether");

fn openssl(dir: &Path, args: &[&str]) {
    let o = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("openssl {args:?}: {e} (Debian: apt-get install openssl)"));
    assert!(
        o.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, all signed by the CA.
fn make_certs(dir: &Path, ca_name: &str) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &format!("/CN={ca_name}"),
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ],
    );
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n",
    )
    .unwrap();
    for who in ["server", "client"] {
        openssl(
            dir,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                &format!("/CN={who}"),
                "-keyout",
                &format!("{who}.key"),
                "-out",
                &format!("{who}.csr"),
            ],
        );
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &format!("{who}.csr"),
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                "san.ext",
                "-out",
                &format!("{who}.pem"),
            ],
        );
    }
}

fn tether(dir: &Path, url: &str, auth: &[&str], args: &[&str]) -> Output {
    Command::new(BIN)
        .args(["--store", url, "--dir"])
        .arg(dir.join("local"))
        .args(auth)
        .args(args)
        .env_remove("TETHER_STORE")
        .env_remove("ETCDCTL_CACERT")
        .env_remove("ETCDCTL_CERT")
        .env_remove("ETCDCTL_KEY")
        .env_remove("ETCDCTL_USER")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn one_line_exit_8(o: &Output, what: &str) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(8), "{what}: {err}");
    assert_eq!(err.trim().lines().count(), 1, "{what}: {err}");
}

#[test]
fn tls_with_client_certificates() {
    if etcd_common::etcd_binary().is_none() {
        return;
    }
    if common::on_path("openssl").is_none() {
        return common::skip("openssl", "apt-get install openssl");
    }
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    make_certs(d, "tether-test-ca");
    let p = |f: &str| d.join(f).to_string_lossy().into_owned();
    let Some(e) = Etcd::start_with(
        "tls_with_client_certificates",
        "127.0.0.1",
        &[
            &format!("--cert-file={}", p("server.pem")),
            &format!("--key-file={}", p("server.key")),
            &format!("--trusted-ca-file={}", p("ca.pem")),
            "--client-cert-auth",
        ],
    ) else {
        return;
    };
    let url = e.url("tls");
    let (ca, cert, key) = (p("ca.pem"), p("client.pem"), p("client.key"));
    let auth = [
        "--etcd-cacert",
        &ca,
        "--etcd-cert",
        &cert,
        "--etcd-key",
        &key,
    ];
    let o = tether(d, &url, &auth, &["run", "--id", "secure", "--", "true"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = tether(d, &url, &auth, &["status", "secure"]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("succeeded"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );

    // No client certificate: the server refuses the handshake.
    one_line_exit_8(
        &tether(d, &url, &["--etcd-cacert", &ca], &["status"]),
        "no client cert",
    );
    // A CA that did not sign the server's certificate.
    let other = tmp.path().join("other");
    std::fs::create_dir(&other).unwrap();
    make_certs(&other, "someone-else");
    let wrong_ca = other.join("ca.pem").to_string_lossy().into_owned();
    let bad = [
        "--etcd-cacert",
        &wrong_ca,
        "--etcd-cert",
        &cert,
        "--etcd-key",
        &key,
    ];
    one_line_exit_8(&tether(d, &url, &bad, &["status"]), "wrong CA");
    // A certificate without its key is a usage mistake, said before connecting.
    one_line_exit_8(
        &tether(
            d,
            &url,
            &["--etcd-cacert", &ca, "--etcd-cert", &cert],
            &["status"],
        ),
        "cert without key",
    );
}

#[test]
fn user_and_password() {
    let Some(e) = Etcd::start("user_and_password") else {
        return;
    };
    if common::on_path("etcdctl").is_none() {
        return common::skip("etcdctl", "apt-get install etcd-client");
    }
    let etcdctl = |args: &[&str]| {
        let o = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg("--endpoints")
            .arg(e.endpoint())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("etcdctl (Debian: etcd-client)");
        assert!(
            o.status.success(),
            "etcdctl {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    etcdctl(&["user", "add", "root:rootpw"]);
    etcdctl(&["auth", "enable"]);
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let url = e.url("auth");
    let o = tether(
        d,
        &url,
        &["--etcd-user", "root:rootpw"],
        &["run", "--id", "authed", "--", "true"],
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = tether(
        d,
        &url,
        &["--etcd-user", "root:rootpw"],
        &["status", "authed"],
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains("succeeded"));
    one_line_exit_8(
        &tether(d, &url, &["--etcd-user", "root:wrong"], &["status"]),
        "wrong password",
    );
    one_line_exit_8(&tether(d, &url, &[], &["status"]), "no user");
    let o = tether(d, &url, &["--etcd-user", "rootonly"], &["status"]);
    one_line_exit_8(&o, "user without password");
}
