//! `[enrich]` settings, with their defaults.

use serde::Deserialize;
use std::path::PathBuf;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EnrichConfig {
    /// Input topic. Default `clinical.normalized.v1`.
    pub input_topic: String,
    /// Output topic. Default `clinical.enriched.v1`.
    pub output_topic: String,
    /// DLQ topic. Default `enrich.dlq.v1`.
    pub dlq_topic: String,
    /// Default `arteria-enrich`.
    pub group_id: String,
    /// Unique and stable per replica. Default `enrich-0`.
    pub transactional_id: String,
    /// Store files written by `arteria terminology load` (full LOINC, SNOMED CT, local maps…),
    /// layered over the shipped content. Default none.
    pub stores: Vec<PathBuf>,
}

impl Default for EnrichConfig {
    fn default() -> Self {
        Self {
            input_topic: "clinical.normalized.v1".into(),
            output_topic: "clinical.enriched.v1".into(),
            dlq_topic: "enrich.dlq.v1".into(),
            group_id: "arteria-enrich".into(),
            transactional_id: "enrich-0".into(),
            stores: Vec::new(),
        }
    }
}
