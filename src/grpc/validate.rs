//! Request validation: everything WeChat would reject, rejected first, naming the field,
//! so a bad request never spends an upstream call (or a scarce permanent code).

use super::ApiError;
use crate::{
    config::SubscriptionLimits,
    events::{Cursor, EventKind, Filter},
    pb,
    wechat::{
        MAX_EXPIRE_SECONDS, MAX_PERMANENT_SCENE_ID, MAX_SCENE_STR_CHARS, QrCodeRequest, Scene,
    },
};

/// Longest ticket accepted, in bytes; WeChat's are about 100 ASCII characters.
const MAX_TICKET_BYTES: usize = 1024;

/// Checks a CreateTicket request against WeChat's rules for its kind.
/// (`account` is checked by [`super::Accounts::select`].)
pub(crate) fn create_ticket(request: &pb::CreateTicketRequest) -> Result<QrCodeRequest, ApiError> {
    use pb::create_ticket_request::Scene as PbScene;
    let scene = match &request.scene {
        None => {
            return Err(ApiError::invalid(
                "scene",
                "one of scene_id or scene_str is required",
            ));
        }
        Some(PbScene::SceneId(0)) if !request.permanent => {
            return Err(ApiError::invalid(
                "scene_id",
                "must be non-zero for a temporary code",
            ));
        }
        Some(PbScene::SceneId(id))
            if request.permanent && !(1..=MAX_PERMANENT_SCENE_ID).contains(id) =>
        {
            return Err(ApiError::invalid(
                "scene_id",
                format!("must be 1..={MAX_PERMANENT_SCENE_ID} for a permanent code, got {id}"),
            ));
        }
        Some(PbScene::SceneId(id)) => Scene::Id(*id),
        Some(PbScene::SceneStr(s)) if s.is_empty() => {
            return Err(ApiError::invalid("scene_str", "must not be empty"));
        }
        Some(PbScene::SceneStr(s)) if s.chars().count() > MAX_SCENE_STR_CHARS => {
            return Err(ApiError::invalid(
                "scene_str",
                format!(
                    "at most {MAX_SCENE_STR_CHARS} characters, got {}",
                    s.chars().count()
                ),
            ));
        }
        Some(PbScene::SceneStr(s)) => {
            // The webhook refuses a scan whose EventKey holds a control character (they
            // only confuse logs, terminals and the systems subscribers feed), so a code
            // carrying one could be printed but never scanned.
            if let Some((position, c)) = s.chars().enumerate().find(|(_, c)| c.is_control()) {
                return Err(ApiError::invalid(
                    "scene_str",
                    format!(
                        "character {position} is the control character U+{:04X}; a scene must be printable",
                        u32::from(c)
                    ),
                ));
            }
            Scene::Str(s.clone())
        }
    };
    if request.permanent && request.expire_seconds != 0 {
        return Err(ApiError::invalid(
            "expire_seconds",
            "must be 0 for a permanent code",
        ));
    }
    if request.expire_seconds > MAX_EXPIRE_SECONDS {
        return Err(ApiError::invalid(
            "expire_seconds",
            format!(
                "at most {MAX_EXPIRE_SECONDS} (30 days), got {}",
                request.expire_seconds
            ),
        ));
    }
    Ok(QrCodeRequest {
        scene,
        expire_seconds: (!request.permanent).then_some(request.expire_seconds),
    })
}

/// Checks a GetImage request's ticket.
pub(crate) fn ticket(ticket: &str) -> Result<&str, ApiError> {
    if ticket.trim().is_empty() {
        return Err(ApiError::invalid("ticket", "is required"));
    }
    if ticket.len() > MAX_TICKET_BYTES {
        return Err(ApiError::invalid(
            "ticket",
            format!("at most {MAX_TICKET_BYTES} bytes, got {}", ticket.len()),
        ));
    }
    Ok(ticket)
}

/// A StreamEvents request that passed validation, its filter not built yet: its
/// [`charge`](Self::charge) is admitted against the memory budget first.
pub(crate) struct StreamRequest {
    tickets: Vec<String>,
    scenes: Vec<String>,
    kinds: Vec<EventKind>,
    /// Where to start; `None`: at the newest event.
    pub(crate) resume_after: Option<Cursor>,
}

impl StreamRequest {
    /// What its filter costs, with `accounts` (see [`Filter::charge`]).
    pub(crate) fn charge(&self, accounts: &[String]) -> u64 {
        Filter::charge(self.tickets.iter().chain(&self.scenes).chain(accounts))
    }

    /// Its filter, with `accounts`.
    pub(crate) fn into_filter(self, accounts: Vec<String>) -> Filter {
        Filter::new(self.tickets, self.scenes, self.kinds).with_accounts(accounts)
    }
}

/// Checks a StreamEvents request. The caps on entries and their bytes bound what one
/// filter holds; the memory budget bounds what all streams hold.
pub(crate) fn stream_events(
    request: pb::StreamEventsRequest,
    limits: &SubscriptionLimits,
) -> Result<StreamRequest, ApiError> {
    let max_entries = limits.max_filter_entries;
    let max_bytes = limits.max_filter_entry_bytes;
    for (field, len) in [
        ("tickets", request.tickets.len()),
        ("scenes", request.scenes.len()),
        ("types", request.types.len()),
    ] {
        if len > max_entries {
            return Err(ApiError::invalid(
                field,
                format!("at most {max_entries} values (WECHAT_QR_MAX_FILTER_ENTRIES), got {len}"),
            ));
        }
    }
    for (field, values) in [("tickets", &request.tickets), ("scenes", &request.scenes)] {
        if let Some((i, value)) = values.iter().enumerate().find(|(_, v)| v.len() > max_bytes) {
            return Err(ApiError::invalid(
                field,
                format!(
                    "value {i} is {} bytes; at most {max_bytes} bytes each (WECHAT_QR_MAX_FILTER_ENTRY_BYTES)",
                    value.len()
                ),
            ));
        }
    }
    let kinds = kinds(&request.types)?;
    let resume_after = if request.resume_after.is_empty() {
        None
    } else {
        Some(
            request
                .resume_after
                .parse::<Cursor>()
                .map_err(|e| ApiError::invalid("resume_after", e.to_string()))?,
        )
    };
    Ok(StreamRequest {
        tickets: request.tickets,
        scenes: request.scenes,
        kinds,
        resume_after,
    })
}

/// The event kinds of a `types` filter field.
pub(crate) fn kinds(types: &[i32]) -> Result<Vec<EventKind>, ApiError> {
    types
        .iter()
        .map(|&raw| match pb::EventType::try_from(raw) {
            Ok(pb::EventType::Subscribe) => Ok(EventKind::Subscribe),
            Ok(pb::EventType::Scan) => Ok(EventKind::Scan),
            Ok(pb::EventType::Unsubscribe) => Ok(EventKind::Unsubscribe),
            Ok(pb::EventType::Unspecified) => Err(ApiError::invalid(
                "types",
                "EVENT_TYPE_UNSPECIFIED is not a filter; omit types for all events",
            )),
            Err(_) => Err(ApiError::invalid(
                "types",
                format!("unknown event type {raw}"),
            )),
        })
        .collect()
}
