//! A certificate authority made for one test (rcgen) and a certificate for 127.0.0.1
//! signed by it: what HTTPS tests serve and trust.

/// The CA's certificate and a server certificate for 127.0.0.1 with its key.
pub struct TestPki {
    pub ca: rcgen::Certificate,
    pub cert: rcgen::Certificate,
    pub key: rcgen::KeyPair,
}

pub fn ca_signed_localhost() -> TestPki {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "capwatch test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
    let cert = params.signed_by(&key, &rcgen::Issuer::from_params(&ca_params, &ca_key)).unwrap();
    TestPki { ca, cert, key }
}
