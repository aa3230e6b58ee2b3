//! A phone's configuration file (`SEP<MAC>.cnf.xml`) as the provisioning service
//! generates it: plain data in, XML out (the elements `signed-files.md` lists under "Plain
//! configuration"). The partial config of encrypted profiles is
//! [`crate::enccnf::PartialConfig`], taken from this XML.

use quick_xml::escape::escape;

/// One call manager (or TVS) node the phone is told about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeRef {
    /// Host name or address (`processNodeName`).
    pub host: String,
}

/// What a device configuration holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceConfig {
    /// `SIP` or `SCCP`.
    pub protocol: String,
    /// 1 non-secure, 2 authenticated, 3 encrypted.
    pub device_security_mode: u8,
    /// `<transportLayerProtocol>`: 2 TCP (non-secure), 4 TLS (authenticated/encrypted).
    pub transport_layer_protocol: u8,
    /// `<ipAddressMode>` (0 IPv4 only).
    pub ip_address_mode: u8,
    /// `<loadInformation>` (firmware load; empty: keep the current one).
    pub load_information: String,
    /// `<capfAuthMode>`: 0 null string, 1 authentication string, 2 LSC, 3 MIC.
    pub capf_auth_mode: u8,
    /// CAPF host and port.
    pub capf: (String, u16),
    /// The call manager group, in priority order.
    pub call_managers: Vec<NodeRef>,
    /// TVS servers and their port.
    pub tvs: Vec<NodeRef>,
    /// TVS port (2445).
    pub tvs_port: u16,
    /// `<certHash>`: MD5 (lower-case hex) of the certificate CAPF recorded; empty if none.
    pub cert_hash: String,
    /// `<encrConfig>`.
    pub encr_config: bool,
}

impl DeviceConfig {
    /// The XML, as served in `SEP<MAC>.cnf.xml` (and signed in `.sgn`, encrypted in
    /// `.enc.sgn`).
    pub fn to_xml(&self) -> String {
        let e = |s: &str| escape(s).into_owned();
        let (sip, sccp) = (5060, 2000);
        let (secure_sip, secure_sccp) = (5061, 2443);
        let mut s = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<device>\n");
        s.push_str("  <fullConfig>true</fullConfig>\n");
        s.push_str(&format!(
            "  <deviceProtocol>{}</deviceProtocol>\n",
            e(&self.protocol)
        ));
        s.push_str("  <devicePool>\n    <callManagerGroup>\n      <members>\n");
        for (i, cm) in self.call_managers.iter().enumerate() {
            s.push_str(&format!(
                "        <member priority=\"{i}\">\n          <callManager>\n            <processNodeName>{}</processNodeName>\n            <ports>\n              <ethernetPhonePort>{sccp}</ethernetPhonePort>\n              <sipPort>{sip}</sipPort>\n              <securedSipPort>{secure_sip}</securedSipPort>\n              <securedEthernetPhonePort>{secure_sccp}</securedEthernetPhonePort>\n            </ports>\n          </callManager>\n        </member>\n",
                e(&cm.host)
            ));
        }
        s.push_str("      </members>\n    </callManagerGroup>\n  </devicePool>\n");
        s.push_str(&format!(
            "  <ipAddressMode>{}</ipAddressMode>\n",
            self.ip_address_mode
        ));
        s.push_str(&format!(
            "  <loadInformation>{}</loadInformation>\n",
            e(&self.load_information)
        ));
        s.push_str(&format!(
            "  <capfAuthMode>{}</capfAuthMode>\n",
            self.capf_auth_mode
        ));
        s.push_str(&format!(
            "  <capfList>\n    <capf>\n      <phonePort>{}</phonePort>\n      <processNodeName>{}</processNodeName>\n    </capf>\n  </capfList>\n",
            self.capf.1,
            e(&self.capf.0)
        ));
        s.push_str(&format!(
            "  <deviceSecurityMode>{}</deviceSecurityMode>\n",
            self.device_security_mode
        ));
        s.push_str(&format!(
            "  <transportLayerProtocol>{}</transportLayerProtocol>\n",
            self.transport_layer_protocol
        ));
        s.push_str("  <TVS>\n    <members>\n");
        for (i, t) in self.tvs.iter().enumerate() {
            s.push_str(&format!(
                "      <member priority=\"{i}\">\n        <port>{}</port>\n        <address>{}</address>\n      </member>\n",
                self.tvs_port,
                e(&t.host)
            ));
        }
        s.push_str("    </members>\n  </TVS>\n");
        s.push_str(&format!("  <certHash>{}</certHash>\n", e(&self.cert_hash)));
        s.push_str(&format!(
            "  <encrConfig>{}</encrConfig>\n",
            self.encr_config
        ));
        s.push_str("</device>\n");
        s
    }
}

/// The fields a phone reads back from a configuration (full or partial).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConfigFacts {
    /// `<fullConfig>` is true.
    pub full: bool,
    /// `<encrConfig>` is true.
    pub encr_config: bool,
    /// `<certHash>`.
    pub cert_hash: String,
    /// `<capfList>`: (host, port) of the first entry.
    pub capf: Option<(String, u16)>,
    /// `<TVS>` members: (address, port).
    pub tvs: Vec<(String, u16)>,
    /// `<deviceSecurityMode>`.
    pub device_security_mode: Option<u8>,
    /// `<capfAuthMode>`.
    pub capf_auth_mode: Option<u8>,
}

/// Read the facts a phone acts on from config XML (untrusted: at most
/// [`crate::enccnf::MAX_CONFIG_LEN`] bytes, never panics).
pub fn facts(xml: &[u8]) -> Result<ConfigFacts, crate::enccnf::XmlError> {
    use crate::enccnf::{XmlStep, walk_config};
    let mut f = ConfigFacts::default();
    let mut capf_host = None;
    let mut capf_port = None;
    let mut tvs_port = None;
    walk_config(xml, |step| {
        let XmlStep::Text(path, text) = step else {
            return;
        };
        let text = text.trim().to_string();
        let p: Vec<&str> = path.iter().map(String::as_str).collect();
        match p.as_slice() {
            ["device", "fullConfig"] => f.full = text.eq_ignore_ascii_case("true"),
            ["device", "encrConfig"] => f.encr_config = text.eq_ignore_ascii_case("true"),
            ["device", "certHash"] => f.cert_hash = text,
            ["device", "deviceSecurityMode"] => f.device_security_mode = text.parse().ok(),
            ["device", "capfAuthMode"] => f.capf_auth_mode = text.parse().ok(),
            ["device", "capfList", "capf", "processNodeName"] if capf_host.is_none() => {
                capf_host = Some(text)
            }
            ["device", "capfList", "capf", "phonePort"] if capf_port.is_none() => {
                capf_port = text.parse::<u16>().ok()
            }
            ["device", "TVS", "members", "member", "port"] => tvs_port = text.parse::<u16>().ok(),
            ["device", "TVS", "members", "member", "address"] => f
                .tvs
                .push((text, tvs_port.take().unwrap_or(crate::ports::TVS))),
            _ => {}
        }
    })?;
    f.capf = capf_host.map(|h| (h, capf_port.unwrap_or(crate::ports::CAPF)));
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> DeviceConfig {
        DeviceConfig {
            protocol: "SIP".into(),
            device_security_mode: 3,
            transport_layer_protocol: 4,
            ip_address_mode: 0,
            load_information: String::new(),
            capf_auth_mode: 0,
            capf: ("pub.example.test".into(), 3804),
            call_managers: vec![NodeRef {
                host: "pub.example.test".into(),
            }],
            tvs: vec![NodeRef {
                host: "pub.example.test".into(),
            }],
            tvs_port: 2445,
            cert_hash: "5a7c9ba27e845ca5ae1c5909712e527f".into(),
            encr_config: true,
        }
    }

    #[test]
    fn generated_xml_reads_back() {
        let xml = sample().to_xml();
        assert!(xml.contains("<deviceSecurityMode>3</deviceSecurityMode>"));
        assert!(xml.contains("<securedSipPort>5061</securedSipPort>"));
        let f = facts(xml.as_bytes()).unwrap();
        assert!(f.full && f.encr_config);
        assert_eq!(f.cert_hash, "5a7c9ba27e845ca5ae1c5909712e527f");
        assert_eq!(f.capf, Some(("pub.example.test".into(), 3804)));
        assert_eq!(f.tvs, [("pub.example.test".to_string(), 2445)]);
        assert_eq!(f.device_security_mode, Some(3));
        // The partial config taken from it keeps CAPF and the hash.
        let p = crate::enccnf::PartialConfig::from_full_config(xml.as_bytes(), None).unwrap();
        let pf = facts(p.to_xml().as_bytes()).unwrap();
        assert!(!pf.full && pf.encr_config);
        assert_eq!(pf.capf, f.capf);
    }

    #[test]
    fn hostile_xml_is_refused_not_panicked_on() {
        assert!(facts(b"<nodevice/>").is_err());
        assert!(facts(b"<device><certHash>").is_ok() || facts(b"<device><certHash>").is_err());
        let deep = "<a>".repeat(100);
        assert!(facts(format!("<device>{deep}").as_bytes()).is_err());
        let escaped = DeviceConfig {
            load_information: "<&>".into(),
            ..sample()
        }
        .to_xml();
        assert!(escaped.contains("&lt;&amp;&gt;"));
        assert!(facts(escaped.as_bytes()).is_ok());
    }
}
