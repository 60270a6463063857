//! Certificates for tests, made with `openssl` at test time: a CA, a server certificate
//! for 127.0.0.1 and a client certificate, for gRPC over TLS and mTLS and for `rediss://`.

/// Makes, with `openssl` in `dir`: a test CA (`ca.pem`, `ca.key`), a server certificate it
/// issued for 127.0.0.1 and localhost (`server.pem`, `server.key`), and a client certificate
/// with the CN `cn` (`<client>.pem`, `<client>.key`). A missing `openssl` is a failure:
/// `scripts/setup-clients` installs it.
pub fn certificates(dir: &std::path::Path, client: &str, cn: &str) {
    let openssl = |args: &[&str]| {
        let output = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl runs (scripts/setup-clients installs it)");
        assert!(output.status.success(), "openssl {args:?}: {output:?}");
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    openssl(
        &[
            &[
                "req",
                "-x509",
                "-days",
                "1",
                "-subj",
                "/CN=wechat-qr test CA",
            ][..],
            &ec,
            &["-keyout", "ca.key", "-out", "ca.pem"],
        ]
        .concat(),
    );
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    for (name, subject, ext) in [
        ("server", "localhost", "server.ext"),
        (client, cn, "client.ext"),
    ] {
        let (key, csr, pem) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.pem"),
        );
        openssl(
            &[
                &["req", "-subj", &format!("/CN={subject}")][..],
                &ec,
                &["-keyout", &key, "-out", &csr],
            ]
            .concat(),
        );
        openssl(&[
            "x509",
            "-req",
            "-days",
            "1",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-extfile",
            ext,
            "-out",
            &pem,
        ]);
    }
}
