//! `[normalize]` settings, with their defaults.

use serde::Deserialize;
use std::path::PathBuf;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NormalizeConfig {
    /// Input topic. Default `hl7v2.raw.v1`.
    pub input_topic: String,
    /// Output topic. Default `clinical.normalized.v1`.
    pub output_topic: String,
    /// DLQ topic. Default `normalize.dlq.v1`.
    pub dlq_topic: String,
    /// Consumer group shared by the replicas. Default `arteria-normalize`.
    pub group_id: String,
    /// Unique and stable per replica (e.g. the pod name). Default `normalize-0`.
    pub transactional_id: String,
    /// Directory of sender profiles (`*.toml`); none by default.
    pub profiles_dir: Option<PathBuf>,
    /// IANA zone for messages whose sender has no profile and whose times carry no offset.
    /// Default none: such times are kept without a zone and reported.
    pub default_time_zone: Option<String>,
    /// A message with the same sender (MSH-3, MSH-4) and control id (MSH-10) as one received
    /// within this many seconds is a retry: marked and not re-emitted. Default 600 (ten
    /// minutes): senders resend after an ACK timeout of seconds to minutes. Memory is about
    /// 60 bytes per message in the window (1 h at 1,000 messages/s ≈ 220 MB), and a restarted
    /// replica reads the window back from the raw topic before it goes on.
    pub duplicate_window_secs: u64,
}

impl Default for NormalizeConfig {
    fn default() -> Self {
        Self {
            input_topic: "hl7v2.raw.v1".into(),
            output_topic: "clinical.normalized.v1".into(),
            dlq_topic: "normalize.dlq.v1".into(),
            group_id: "arteria-normalize".into(),
            transactional_id: "normalize-0".into(),
            profiles_dir: None,
            default_time_zone: None,
            duplicate_window_secs: 600,
        }
    }
}
