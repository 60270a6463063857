//! The `wechat.qr.v1.ChannelStatsService` implementation: turns a request into a
//! [`SceneQuery`] — bucket edges in the caller's IANA time zone, the scenes, how many fit
//! one answer — refusing what it cannot answer with INVALID_ARGUMENT naming the field,
//! asks [`ChannelStats`], and shapes the answer for the wire. Failures go through
//! [`ApiError`] like every other RPC's.

use std::{collections::HashSet, sync::Arc};

use jiff::tz::TimeZone;
use tonic::{Request, Response, Status};

use super::{ApiError, Caller, request_id};
use crate::{
    metrics::Metrics,
    pb,
    stats::{self, BucketError, BucketSize, ChannelStats, Counts, SceneQuery},
};

/// Most scenes in one GetSceneStats answer (and in its `scenes` filter).
pub(super) const MAX_SCENES: usize = 1_000;
/// Most scene-buckets in one answer: about 4 MB on the wire at worst.
pub(super) const MAX_CELLS: usize = 200_000;
/// Longest scene in a filter, in bytes (WeChat's are at most 64 characters).
const MAX_SCENE_BYTES: usize = 1_024;
/// Scenes per ListScenes page when the request says 0, and at most.
const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 1_000;
/// Largest encoded answer: MAX_CELLS scene-buckets of four counts each, with room.
pub const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

/// The gRPC service over the statistics.
#[derive(Debug, Clone)]
pub struct ChannelStatsService {
    /// Each account's statistics, by AppID, in configuration order.
    stats: Arc<[(String, ChannelStats)]>,
    metrics: Arc<Metrics>,
}

impl ChannelStatsService {
    /// The service over each account's statistics (`(AppID, stats)`, at least one).
    pub fn new(stats: Vec<(String, ChannelStats)>, metrics: Arc<Metrics>) -> Self {
        Self {
            stats: stats.into(),
            metrics,
        }
    }

    async fn observed<T>(
        &self,
        method: &'static str,
        call: impl Future<Output = Result<T, Status>>,
    ) -> Result<T, Status> {
        super::observed(&self.metrics, method, call).await
    }

    /// The statistics of the account a request names: empty is the only account (with
    /// several, INVALID_ARGUMENT naming them); unknown is NOT_FOUND; one the caller may
    /// not use is PERMISSION_DENIED.
    fn select(&self, account: &str, caller: Option<&Caller>) -> Result<&ChannelStats, ApiError> {
        let configured = || {
            let ids: Vec<&str> = self.stats.iter().map(|(id, _)| id.as_str()).collect();
            ids.join(", ")
        };
        let (app_id, stats) = match (account, &*self.stats) {
            ("", [(app_id, only)]) => (app_id, only),
            ("", _) => {
                return Err(ApiError::invalid(
                    "account",
                    format!(
                        "several accounts are configured; name one: {}",
                        configured()
                    ),
                ));
            }
            (account, all) => {
                let (app_id, stats) = all
                    .iter()
                    .find(|(id, _)| id == account)
                    .ok_or_else(|| ApiError::unknown_account("account", account, configured()))?;
                (app_id, stats)
            }
        };
        if let Some(caller) = caller
            && !caller.may_use(app_id)
        {
            return Err(caller.denied(app_id));
        }
        Ok(stats)
    }

    async fn get_scene_stats_inner(
        &self,
        request: pb::GetSceneStatsRequest,
        caller: Option<Caller>,
    ) -> Result<pb::GetSceneStatsResponse, ApiError> {
        let stats = self.select(&request.account, caller.as_ref())?;
        let (query, zone_name) = scene_query(request)?;
        let edges = query.edges.clone();
        let answer = stats.scene_stats(query).await?;
        let at = |second: i64| prost_types::Timestamp {
            seconds: second,
            nanos: 0,
        };
        Ok(pb::GetSceneStatsResponse {
            buckets: edges
                .windows(2)
                .map(|w| pb::BucketSpan {
                    start_time: Some(at(w[0])),
                    end_time: Some(at(w[1])),
                })
                .collect(),
            scenes: answer
                .scenes
                .into_iter()
                .map(|series| pb::SceneStats {
                    scene: series.scene,
                    buckets: series.buckets.iter().map(to_pb_counts).collect(),
                    totals: Some(to_pb_counts(&series.totals)),
                })
                .collect(),
            omitted_scenes: u32::try_from(answer.omitted).unwrap_or(u32::MAX),
            cursor: answer.counted.to_string(),
            time_zone: zone_name,
        })
    }

    async fn list_scenes_inner(
        &self,
        request: pb::ListScenesRequest,
        caller: Option<Caller>,
    ) -> Result<pb::ListScenesResponse, ApiError> {
        let stats = self.select(&request.account, caller.as_ref())?;
        let limit = match request.page_size as usize {
            0 => DEFAULT_PAGE,
            n if n > MAX_PAGE => {
                return Err(ApiError::invalid(
                    "page_size",
                    format!("at most {MAX_PAGE}, got {n}"),
                ));
            }
            n => n,
        };
        let after = if request.page_token.is_empty() {
            None
        } else {
            Some(
                hex::decode(&request.page_token)
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .ok_or_else(|| {
                        ApiError::invalid("page_token", "not a page token this service issued")
                    })?,
            )
        };
        let (scenes, more) = stats.list_scenes(after, limit).await?;
        let next_page_token = match (more, scenes.last()) {
            (true, Some(last)) => hex::encode(last.scene.as_bytes()),
            _ => String::new(),
        };
        let at = |second: i64| {
            Some(prost_types::Timestamp {
                seconds: second,
                nanos: 0,
            })
        };
        Ok(pb::ListScenesResponse {
            scenes: scenes
                .into_iter()
                .map(|s| pb::SceneSummary {
                    totals: Some(to_pb_counts(&s.totals)),
                    first_activity_time: at(s.first_activity),
                    last_activity_time: at(s.last_activity),
                    scene: s.scene,
                })
                .collect(),
            next_page_token,
        })
    }
}

#[tonic::async_trait]
impl pb::channel_stats_service_server::ChannelStatsService for ChannelStatsService {
    #[tracing::instrument(skip_all, fields(rpc = "GetSceneStats", request_id = %request_id(&request)))]
    async fn get_scene_stats(
        &self,
        request: Request<pb::GetSceneStatsRequest>,
    ) -> Result<Response<pb::GetSceneStatsResponse>, Status> {
        self.observed("GetSceneStats", async {
            Ok(Response::new(
                self.get_scene_stats_inner(
                    request.get_ref().clone(),
                    request.extensions().get::<Caller>().cloned(),
                )
                .await?,
            ))
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(rpc = "ListScenes", request_id = %request_id(&request)))]
    async fn list_scenes(
        &self,
        request: Request<pb::ListScenesRequest>,
    ) -> Result<Response<pb::ListScenesResponse>, Status> {
        self.observed("ListScenes", async {
            Ok(Response::new(
                self.list_scenes_inner(
                    request.get_ref().clone(),
                    request.extensions().get::<Caller>().cloned(),
                )
                .await?,
            ))
        })
        .await
    }
}

fn to_pb_counts(counts: &Counts) -> pb::SceneCounts {
    pb::SceneCounts {
        scans: counts.scans,
        new_followers: counts.new_followers,
        unique_users: counts.unique_users,
        unfollows: counts.unfollows,
    }
}

/// Checks a GetSceneStats request and computes its bucket edges; also returns the name
/// of the zone the buckets are in.
fn scene_query(request: pb::GetSceneStatsRequest) -> Result<(SceneQuery, String), ApiError> {
    let start = second_of("start_time", request.start_time.as_ref())?;
    let end = second_of("end_time", request.end_time.as_ref())?;
    // Events have whole seconds: an end inside a second still takes that second.
    let end = match request.end_time {
        Some(t) if t.nanos > 0 => end.saturating_add(1),
        _ => end,
    };
    if end <= start {
        return Err(ApiError::invalid("end_time", "must be after start_time"));
    }
    let size = match pb::Bucket::try_from(request.bucket) {
        Ok(pb::Bucket::Hour) => BucketSize::Hour,
        Ok(pb::Bucket::Day) => BucketSize::Day,
        Ok(pb::Bucket::Unspecified) => {
            return Err(ApiError::invalid(
                "bucket",
                "is required: BUCKET_HOUR or BUCKET_DAY",
            ));
        }
        Err(_) => {
            return Err(ApiError::invalid(
                "bucket",
                format!("unknown bucket {}", request.bucket),
            ));
        }
    };
    let (zone, zone_name) = if request.time_zone.is_empty() {
        (TimeZone::UTC, "UTC".to_owned())
    } else {
        let zone = TimeZone::get(&request.time_zone).map_err(|_| {
            ApiError::invalid(
                "time_zone",
                format!(
                    "unknown time zone {}; use an IANA name such as Asia/Shanghai",
                    super::quote(&request.time_zone)
                ),
            )
        })?;
        (zone, request.time_zone.clone())
    };
    let edges = stats::edges(start, end, size, &zone).map_err(|e| match e {
        BucketError::TooMany => ApiError::invalid(
            "end_time",
            format!(
                "the range holds more than {} {} buckets; shorten it{}",
                stats::MAX_BUCKETS,
                if size == BucketSize::Hour {
                    "hour"
                } else {
                    "day"
                },
                if size == BucketSize::Hour {
                    " or use BUCKET_DAY"
                } else {
                    ""
                }
            ),
        ),
        BucketError::OutOfRange(why) => ApiError::invalid("start_time", why),
    })?;
    let buckets = edges.len() - 1;
    let fit = (MAX_CELLS / buckets).clamp(1, MAX_SCENES);
    if request.scenes.len() > fit {
        return Err(ApiError::invalid(
            "scenes",
            format!(
                "at most {fit} scenes with {buckets} buckets (an answer holds up to {MAX_SCENES} scenes and {MAX_CELLS} scene-buckets), got {}",
                request.scenes.len()
            ),
        ));
    }
    let mut seen = HashSet::new();
    let mut scenes = Vec::with_capacity(request.scenes.len());
    for (i, scene) in request.scenes.into_iter().enumerate() {
        if scene.is_empty() || scene.len() > MAX_SCENE_BYTES {
            return Err(ApiError::invalid(
                "scenes",
                format!("value {i} must be 1 to {MAX_SCENE_BYTES} bytes"),
            ));
        }
        if seen.insert(scene.clone()) {
            scenes.push(scene);
        }
    }
    let max_scenes = match request.max_scenes as usize {
        0 => fit,
        n if n > fit => {
            return Err(ApiError::invalid(
                "max_scenes",
                format!(
                    "at most {fit} with {buckets} buckets (an answer holds up to {MAX_SCENES} scenes and {MAX_CELLS} scene-buckets), got {n}"
                ),
            ));
        }
        n => n,
    };
    Ok((
        SceneQuery {
            edges,
            scenes,
            max_scenes,
        },
        zone_name,
    ))
}

/// A required timestamp's Unix second.
fn second_of(field: &'static str, time: Option<&prost_types::Timestamp>) -> Result<i64, ApiError> {
    let time = time.ok_or_else(|| ApiError::invalid(field, "is required"))?;
    if !(0..1_000_000_000).contains(&time.nanos) {
        return Err(ApiError::invalid(
            field,
            format!("nanos must be 0..=999999999, got {}", time.nanos),
        ));
    }
    // jiff's range: years -9999 to 9999.
    if jiff::Timestamp::from_second(time.seconds).is_err() {
        return Err(ApiError::invalid(
            field,
            format!("{} seconds is outside years -9999 to 9999", time.seconds),
        ));
    }
    Ok(time.seconds)
}
