//! The record of processing activities (GDPR art. 30), generated from the purpose registry
//! and the clients: one entry per purpose, with its legal bases, the categories of data and
//! of people, the recipients (the clients allowed to use it), retention and the security
//! measures. It holds no personal data.

use serde::Serialize;

use crate::access::Role;
use crate::client::Client;
use crate::purpose::{DPO_PURPOSE, Purpose, Registry};

/// Version of the JSON document.
pub const REPORT_VERSION: u32 = 1;

/// Who the controller is (art. 30(1)(a)), from the daemon's configuration.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Controller {
    /// The controller's name (the campaign, party or association).
    pub name: String,
    /// How to contact the controller.
    pub contact: String,
    /// How to contact the data protection officer.
    pub dpo_contact: String,
}

/// One processing activity.
#[derive(Debug, Clone, Serialize)]
pub struct Activity {
    /// Purpose id.
    pub purpose: String,
    /// What the processing is for (art. 30(1)(b)).
    pub description: String,
    /// Art. 6 basis.
    pub lawful_basis: String,
    /// Art. 9 condition (political opinions are special-category data).
    pub special_category_basis: String,
    /// Categories of people (art. 30(1)(c)).
    pub data_subjects: String,
    /// Categories of data: the fields the purpose may see (art. 30(1)(c)).
    pub data_categories: Vec<String>,
    /// Contact channels.
    pub channels: Vec<String>,
    /// Recipients: the clients allowed to use the purpose (art. 30(1)(d)).
    pub recipients: Vec<Recipient>,
    /// Transfers outside the EU (art. 30(1)(e)).
    pub transfers: String,
    /// Retention (art. 30(1)(f)).
    pub retention: String,
}

/// A client that may receive data for a purpose.
#[derive(Debug, Clone, Serialize)]
pub struct Recipient {
    /// Client name.
    pub name: String,
    /// Client role.
    pub role: String,
}

/// The record.
#[derive(Debug, Clone, Serialize)]
pub struct ProcessingReport {
    /// Document version.
    pub version: u32,
    /// When it was generated, microseconds since the Unix epoch.
    pub generated_at_us: i64,
    /// The controller.
    pub controller: Controller,
    /// One entry per purpose.
    pub activities: Vec<Activity>,
    /// Technical and organisational security measures (art. 30(1)(g)).
    pub security_measures: Vec<String>,
}

fn subjects(p: &Purpose) -> String {
    use crate::purpose::SpecialCategoryBasis::*;
    match p.special_category_basis {
        PoliticalBodyMembers => "members of the party".into(),
        PoliticalBodyRegularContacts => {
            "people in regular contact with the campaign (supporters, donors)".into()
        }
        ExplicitConsent => "supporters who gave their explicit consent".into(),
        MadePublic => "people who made the data public".into(),
        LegalClaims => "people who exercise their rights, and anyone the request concerns".into(),
    }
}

fn retention(p: &Purpose) -> String {
    if p.id == DPO_PURPOSE || p.retention_days == 0 {
        "gives no retention basis of its own: data is kept only under another purpose".into()
    } else {
        format!("{} days after the last positive contact", p.retention_days)
    }
}

impl ProcessingReport {
    /// Builds the record; `storage` describes where data lives, for the transfers entry.
    pub fn build(
        registry: &Registry,
        clients: &[Client],
        controller: &Controller,
        storage: &str,
        now_us: i64,
    ) -> Self {
        let activities = registry
            .iter()
            .map(|p| {
                let recipients = clients
                    .iter()
                    .filter(|c| c.is_active())
                    .filter(|c| {
                        c.purposes.contains(&p.id) || (p.id == DPO_PURPOSE && c.role == Role::Dpo)
                    })
                    .map(|c| Recipient {
                        name: c.name.clone(),
                        role: c.role.to_string(),
                    })
                    .collect();
                Activity {
                    purpose: p.id.clone(),
                    description: p.description.clone(),
                    lawful_basis: p.lawful_basis.to_string(),
                    special_category_basis: p.special_category_basis.to_string(),
                    data_subjects: subjects(p),
                    data_categories: p.fields.iter().map(|f| f.path().to_owned()).collect(),
                    channels: p.channels.iter().map(|c| c.to_string()).collect(),
                    recipients,
                    transfers: format!(
                        "none: the data stays in {storage}, under the controller's control"
                    ),
                    retention: retention(p),
                }
            })
            .collect();
        Self {
            version: REPORT_VERSION,
            generated_at_us: now_us,
            controller: controller.clone(),
            activities,
            security_measures: vec![
                "Encryption at rest: AES-256-GCM under one key per person, wrapped by rotating key epochs under a root key kept outside the store".into(),
                "Lookup and deduplication by keyed HMAC blind indexes: no email or phone stored in clear".into(),
                "Purpose limitation enforced on every call: role, client purposes, consent, fields per purpose".into(),
                "Tamper-evident access log of every access (Merkle tree, signed checkpoints), verifiable offline".into(),
                "Per-client credentials stored hashed; optional mutual TLS".into(),
            ],
        }
    }

    /// The JSON document.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }

    /// The Markdown document.
    pub fn to_markdown(&self) -> String {
        let mut md = String::new();
        md.push_str("# Record of processing activities (GDPR art. 30)\n\n");
        md.push_str(&format!(
            "- Controller: {}\n- Contact: {}\n- Data protection officer: {}\n\n",
            or_unset(&self.controller.name),
            or_unset(&self.controller.contact),
            or_unset(&self.controller.dpo_contact)
        ));
        for a in &self.activities {
            md.push_str(&format!("## {}\n\n{}\n\n", a.purpose, a.description));
            md.push_str(&format!("- Lawful basis (art. 6): {}\n", a.lawful_basis));
            md.push_str(&format!(
                "- Special-category condition (art. 9): {}\n",
                a.special_category_basis
            ));
            md.push_str(&format!("- Data subjects: {}\n", a.data_subjects));
            md.push_str(&format!("- Data: {}\n", a.data_categories.join(", ")));
            md.push_str(&format!("- Channels: {}\n", a.channels.join(", ")));
            let recipients: Vec<String> = a
                .recipients
                .iter()
                .map(|r| format!("{} ({})", r.name, r.role))
                .collect();
            md.push_str(&format!(
                "- Recipients: {}\n",
                if recipients.is_empty() {
                    "none".to_owned()
                } else {
                    recipients.join(", ")
                }
            ));
            md.push_str(&format!("- Transfers outside the EU: {}\n", a.transfers));
            md.push_str(&format!("- Retention: {}\n\n", a.retention));
        }
        md.push_str("## Security measures\n\n");
        for m in &self.security_measures {
            md.push_str(&format!("- {m}\n"));
        }
        md
    }
}

fn or_unset(s: &str) -> &str {
    if s.trim().is_empty() {
        "(not configured: set [controller] in the config file)"
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::purpose::default_registry;
    use std::collections::BTreeSet;

    fn client(name: &str, role: Role, purposes: &[&str], revoked: bool) -> Client {
        Client {
            id: name.into(),
            name: name.into(),
            role,
            purposes: purposes
                .iter()
                .map(|p| (*p).to_owned())
                .collect::<BTreeSet<_>>(),
            created_at_us: 0,
            revoked_at_us: revoked.then_some(1),
            cert_sha256: None,
            expires_at_us: None,
        }
    }

    #[test]
    fn every_purpose_with_its_recipients() {
        let reg = Registry::new(default_registry());
        let clients = [
            client("mailer", Role::CampaignTool, &["newsletter"], false),
            client("old-mailer", Role::CampaignTool, &["newsletter"], true),
            client("dpo", Role::Dpo, &[DPO_PURPOSE], false),
        ];
        let controller = Controller {
            name: "Campagne 2027".into(),
            contact: "contact@c.fr".into(),
            dpo_contact: "dpo@c.fr".into(),
        };
        let r = ProcessingReport::build(&reg, &clients, &controller, "the embedded store", 0);
        assert_eq!(r.activities.len(), 7);
        let news = r
            .activities
            .iter()
            .find(|a| a.purpose == "newsletter")
            .unwrap();
        assert_eq!(
            news.recipients.len(),
            1,
            "revoked clients are not recipients"
        );
        assert_eq!(news.lawful_basis, "consent");
        assert!(news.retention.starts_with("1095 days"));
        let md = r.to_markdown();
        assert!(
            md.contains("## donations-accounting")
                && md.contains("Recipients: mailer (campaign-tool)")
        );
        assert!(md.contains("dpo (dpo)"));
        let json: serde_json::Value = serde_json::from_slice(&r.to_json()).unwrap();
        assert_eq!(json["version"], 1);
        assert_eq!(json["activities"].as_array().unwrap().len(), 7);
    }
}
