//! Metrics. Every value carries a label saying how it was computed.

pub mod baseline_check;
pub mod classifier;
pub mod evaluation;
pub mod feature_files;
pub mod feature_net;
pub mod fid;
pub mod forgetting;
pub mod inception;
pub mod inception_score;
pub mod kid;
pub mod likelihood;
pub mod memorization;
pub mod precision_recall;
pub mod suite;
pub mod weights;
