//! What the configured API key may do, in venue-neutral terms, and the
//! gateway's rules for it: a key that can withdraw is refused unless the
//! operator allows it, a read-only or expired key is refused, and a missing
//! permission, a missing IP allowlist or a near expiry are warned about.
//!
//! Adapters read the key's description from the venue (Kraken
//! `GetApiKeyInfo`, Bybit `/v5/user/query-api`) and fill a [`KeyInfo`];
//! [`KeyInfo::assess`] is the one place the rules live. The key itself never
//! appears here: only its name.

use serde::Serialize;

/// The key as the venue describes it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct KeyInfo {
    /// The key's name or note (never the key).
    pub name: String,
    /// The permissions in the venue's own words, for display.
    pub permissions: Vec<String>,
    /// The venue's name of the withdrawal permission, when the key has it.
    pub withdraw_permission: Option<String>,
    /// The key can neither place nor cancel orders.
    pub read_only: bool,
    /// Permissions Herd needs that the key lacks (the venue's words).
    pub lacking: Vec<String>,
    /// IP addresses or ranges the key is bound to; empty = any address.
    pub ip_allowlist: Vec<String>,
    /// When the key stops working, Unix ms; `None` = never.
    pub expires_at_ms: Option<i64>,
    /// Kraken's nonce window in seconds, when the key has one.
    pub nonce_window_s: Option<u32>,
}

/// What the gateway does about a key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct KeyVerdict {
    /// Why the gateway must not run with this key; `None` = it may.
    pub refusal: Option<String>,
    /// What an operator should fix, one sentence each.
    pub warnings: Vec<String>,
}

/// One measurement of the venue's clock against ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ClockReading {
    /// The venue's clock minus ours, ms (best estimate).
    pub offset_ms: i64,
    /// How far the estimate may be off, ms (half the round trip, plus the
    /// venue's resolution: Kraken's `Time` has whole seconds).
    pub uncertainty_ms: i64,
}

/// How the rules are tuned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyPolicy {
    /// Run even though the key can withdraw (then warn on every check).
    pub allow_withdrawal_permission: bool,
    /// Warn when the key expires within this many ms.
    pub expiry_warning_ms: i64,
}

impl Default for KeyPolicy {
    fn default() -> KeyPolicy {
        KeyPolicy {
            allow_withdrawal_permission: false,
            expiry_warning_ms: 7 * 24 * 3_600_000,
        }
    }
}

impl KeyInfo {
    /// The gateway's rules, applied at `now_ms`.
    pub fn assess(&self, now_ms: i64, policy: KeyPolicy) -> KeyVerdict {
        let mut v = KeyVerdict::default();
        let name = if self.name.is_empty() {
            "the API key".to_string()
        } else {
            format!("the API key {:?}", self.name)
        };
        if let Some(perm) = &self.withdraw_permission {
            if policy.allow_withdrawal_permission {
                v.warnings.push(format!(
                    "{name} has the withdrawal permission ({perm}), allowed by \
                     key_check.allow_withdrawal_permission; Herd never withdraws: \
                     a trade-only key is safer"
                ));
            } else {
                v.refusal = Some(format!(
                    "{name} has the withdrawal permission ({perm}); Herd never withdraws, \
                     so it refuses a key that can: create a key without it, or set \
                     key_check.allow_withdrawal_permission = true to accept the risk"
                ));
            }
        }
        if self.read_only && v.refusal.is_none() {
            v.refusal = Some(format!(
                "{name} is read-only: Herd cannot place or cancel orders with it"
            ));
        }
        if let Some(expires) = self.expires_at_ms {
            if expires <= now_ms {
                v.refusal
                    .get_or_insert_with(|| format!("{name} has expired"));
            } else if expires - now_ms <= policy.expiry_warning_ms {
                let hours = (expires - now_ms) / 3_600_000;
                v.warnings
                    .push(format!("{name} expires in {hours} h: renew it"));
            }
        }
        if !self.lacking.is_empty() {
            v.warnings.push(format!(
                "{name} lacks permissions Herd needs: {}",
                self.lacking.join(", ")
            ));
        }
        if self.ip_allowlist.is_empty() {
            v.warnings.push(format!(
                "{name} has no IP allowlist: anyone holding it can use it from anywhere"
            ));
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000_000;

    fn trade_only() -> KeyInfo {
        KeyInfo {
            name: "herd".into(),
            permissions: vec!["query-funds".into(), "modify-trades".into()],
            ip_allowlist: vec!["10.0.0.1".into()],
            ..KeyInfo::default()
        }
    }

    #[test]
    fn a_trade_only_bound_key_passes_silently() {
        assert_eq!(
            trade_only().assess(NOW, KeyPolicy::default()),
            KeyVerdict::default()
        );
    }

    #[test]
    fn a_withdrawing_key_is_refused_unless_allowed_then_warned() {
        let k = KeyInfo {
            withdraw_permission: Some("withdraw-funds".into()),
            ..trade_only()
        };
        let v = k.assess(NOW, KeyPolicy::default());
        let refusal = v.refusal.unwrap();
        assert!(refusal.contains("withdraw-funds"), "{refusal}");
        assert!(refusal.contains("allow_withdrawal_permission"), "{refusal}");
        let allowed = KeyPolicy {
            allow_withdrawal_permission: true,
            ..KeyPolicy::default()
        };
        let v = k.assess(NOW, allowed);
        assert_eq!(v.refusal, None);
        assert!(v.warnings[0].contains("withdrawal permission"), "{v:?}");
    }

    #[test]
    fn read_only_and_expired_keys_are_refused() {
        let ro = KeyInfo {
            read_only: true,
            ..trade_only()
        };
        assert!(
            ro.assess(NOW, KeyPolicy::default())
                .refusal
                .unwrap()
                .contains("read-only")
        );
        let gone = KeyInfo {
            expires_at_ms: Some(NOW - 1),
            ..trade_only()
        };
        assert!(
            gone.assess(NOW, KeyPolicy::default())
                .refusal
                .unwrap()
                .contains("expired")
        );
    }

    #[test]
    fn near_expiry_missing_permissions_and_no_allowlist_warn() {
        let k = KeyInfo {
            expires_at_ms: Some(NOW + 3 * 24 * 3_600_000),
            lacking: vec!["cancel-close-trades".into()],
            ip_allowlist: Vec::new(),
            ..trade_only()
        };
        let v = k.assess(NOW, KeyPolicy::default());
        assert_eq!(v.refusal, None);
        assert_eq!(v.warnings.len(), 3, "{v:?}");
        assert!(v.warnings[0].contains("expires in 72 h"));
        assert!(v.warnings[1].contains("cancel-close-trades"));
        assert!(v.warnings[2].contains("no IP allowlist"));
        // Far from expiry: no warning.
        let later = KeyInfo {
            expires_at_ms: Some(NOW + 30 * 24 * 3_600_000),
            ..trade_only()
        };
        assert!(later.assess(NOW, KeyPolicy::default()).warnings.is_empty());
    }
}
