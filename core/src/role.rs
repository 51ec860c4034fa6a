//! The node's roles on the Livepeer network: one closed set for the configuration, first-boot
//! setup, the API and the UI.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case", try_from = "String")]
pub enum NetworkRole {
    /// No payments.
    #[default]
    Off,
    /// Pays orchestrators (funds a deposit and reserve).
    Gateway,
    /// Earns tickets for work done.
    Orchestrator,
    Both,
    /// Holds the key and the deposit and signs for gateways that hold none.
    Signer,
}

impl NetworkRole {
    pub const ALL: [NetworkRole; 5] = [
        NetworkRole::Off,
        NetworkRole::Gateway,
        NetworkRole::Orchestrator,
        NetworkRole::Both,
        NetworkRole::Signer,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            NetworkRole::Off => "off",
            NetworkRole::Gateway => "gateway",
            NetworkRole::Orchestrator => "orchestrator",
            NetworkRole::Both => "both",
            NetworkRole::Signer => "signer",
        }
    }

    /// Earns tickets (orchestrator or both).
    pub fn earns(self) -> bool {
        matches!(self, NetworkRole::Orchestrator | NetworkRole::Both)
    }

    /// Pays for work (gateway or both).
    pub fn pays(self) -> bool {
        matches!(self, NetworkRole::Gateway | NetworkRole::Both)
    }

    pub fn is_off(self) -> bool {
        self == NetworkRole::Off
    }
}

impl std::fmt::Display for NetworkRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for NetworkRole {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                let all: Vec<&str> = Self::ALL.iter().map(|r| r.as_str()).collect();
                format!("'{s}' is not a role; allowed: {}", all.join(", "))
            })
    }
}

impl TryFrom<String> for NetworkRole {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_read_and_write_as_their_names() {
        for r in NetworkRole::ALL {
            assert_eq!(r.as_str().parse::<NetworkRole>(), Ok(r));
            let json = serde_json::to_string(&r).expect("json");
            assert_eq!(json, format!("\"{r}\""));
            assert_eq!(
                serde_json::from_str::<NetworkRole>(&json).expect("parse"),
                r
            );
        }
        let e = serde_json::from_str::<NetworkRole>("\"boss\"").expect_err("not a role");
        assert!(
            e.to_string()
                .contains("'boss' is not a role; allowed: off, gateway"),
            "{e}"
        );
    }
}
