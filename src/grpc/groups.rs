//! `wechat.qr.v1.ConsumerGroupService`: the consumer groups of
//! [`events::groups`](crate::events::groups) on the wire. Requests are validated here,
//! each group's account is checked against the caller (a client of `[[clients]]` sees and
//! joins only its accounts' groups), and a member's stream is one task that sends events
//! out and applies the acknowledgements coming in, confirming each once it is durable.

use std::{collections::VecDeque, pin::Pin, sync::Arc, time::Duration};

use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::sync::mpsc;
use tokio_stream::{Stream, wrappers::ReceiverStream};
use tonic::{Request, Response, Status, Streaming};

use super::{Accounts, ApiError, Caller, observed, to_pb_event, validate};
use crate::{
    events::{
        Cursor,
        groups::{
            DEFAULT_DEADLINE_SECONDS, DEFAULT_MAX_UNACKED, GroupDelivery, GroupError, GroupSpec,
            GroupStatus, Groups, MAX_DEADLINE_SECONDS, MAX_UNACKED, Member, MemberEvent,
            SeekTarget, Start,
        },
    },
    metrics::Metrics,
    pb,
};

/// Deliveries per response message at most.
const MAX_PER_RESPONSE: usize = 500;
/// Longest group name.
const MAX_NAME: usize = 64;
/// Ids per acknowledgement request at most.
const MAX_IDS: usize = 10_000;

/// The gRPC service.
#[derive(Debug, Clone)]
pub struct ConsumerGroupService {
    accounts: Accounts,
    groups: Groups,
    metrics: Arc<Metrics>,
    /// Filter caps shared with StreamEvents.
    max_filter_entries: usize,
    max_filter_entry_bytes: usize,
}

impl ConsumerGroupService {
    /// The service over `groups` for `accounts`; filters are capped as StreamEvents'.
    pub fn new(
        accounts: Accounts,
        groups: Groups,
        metrics: Arc<Metrics>,
        limits: crate::config::SubscriptionLimits,
    ) -> Self {
        Self {
            accounts,
            groups,
            metrics,
            max_filter_entries: limits.max_filter_entries,
            max_filter_entry_bytes: limits.max_filter_entry_bytes,
        }
    }

    /// The AppID a request names in `account`, if the caller may use it.
    fn account<T>(&self, request: &Request<T>, account: &str) -> Result<String, ApiError> {
        let app_id = self
            .accounts
            .select("account", account)?
            .app_id()
            .to_owned();
        if let Some(caller) = request.extensions().get::<Caller>()
            && !caller.may_use(&app_id)
        {
            return Err(caller.denied(&app_id));
        }
        Ok(app_id)
    }
}

fn group_name(field: &'static str, name: &str) -> Result<(), ApiError> {
    if name.is_empty() || name.len() > MAX_NAME {
        return Err(ApiError::invalid(
            field,
            format!("1 to {MAX_NAME} characters, got {}", name.len()),
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(ApiError::invalid(
            field,
            format!("{c:?} is not allowed; use A-Z a-z 0-9 . _ -"),
        ));
    }
    Ok(())
}

fn cursors(field: &'static str, ids: &[String]) -> Result<Vec<Cursor>, ApiError> {
    if ids.len() > MAX_IDS {
        return Err(ApiError::invalid(field, format!("at most {MAX_IDS} ids")));
    }
    ids.iter()
        .map(|id| {
            id.parse::<Cursor>()
                .map_err(|e| ApiError::invalid(field, format!("{id:?}: {e}")))
        })
        .collect()
}

fn extension(seconds: u32) -> Result<Option<Duration>, ApiError> {
    match seconds {
        0 => Ok(None),
        s if s <= MAX_DEADLINE_SECONDS => Ok(Some(Duration::from_secs(u64::from(s)))),
        s => Err(ApiError::invalid(
            "extend_seconds",
            format!("at most {MAX_DEADLINE_SECONDS}, got {s}"),
        )),
    }
}

fn millis_to_timestamp(ms: u64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: i64::try_from(ms / 1000).unwrap_or(i64::MAX),
        nanos: i32::try_from((ms % 1000) * 1_000_000).unwrap_or(0),
    }
}

fn to_pb_group(spec: &GroupSpec) -> pb::ConsumerGroup {
    pb::ConsumerGroup {
        name: spec.name.clone(),
        account: spec.account.clone(),
        tickets: spec.tickets.clone(),
        scenes: spec.scenes.clone(),
        types: spec
            .event_kinds()
            .into_iter()
            .map(|k| {
                i32::from(match k {
                    crate::events::EventKind::Subscribe => pb::EventType::Subscribe,
                    crate::events::EventKind::Scan => pb::EventType::Scan,
                    crate::events::EventKind::Unsubscribe => pb::EventType::Unsubscribe,
                })
            })
            .collect(),
        ack_deadline_seconds: spec.ack_deadline_seconds,
        max_deliveries: spec.max_deliveries,
        max_unacked_per_member: spec.max_unacked_per_member,
        create_time: Some(millis_to_timestamp(spec.create_ms)),
    }
}

fn to_pb_status(status: GroupStatus) -> pb::GroupStatus {
    pb::GroupStatus {
        group: Some(to_pb_group(&status.spec)),
        position: status.position.to_string(),
        pending: status.pending,
        lag: status.lag,
        dead_letters: status.dead_letters,
        redeliveries: status.redeliveries,
        members: status
            .members
            .into_iter()
            .map(|m| pb::GroupMember {
                name: m.name,
                unacked: m.unacked,
            })
            .collect(),
    }
}

fn to_pb_delivery(delivery: &GroupDelivery) -> pb::GroupDelivery {
    pb::GroupDelivery {
        event: Some(to_pb_event(&delivery.event)),
        ack_id: delivery.cursor.to_string(),
        delivery_count: delivery.deliveries,
        deadline: Some(delivery.deadline.into()),
    }
}

type Out<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl pb::consumer_group_service_server::ConsumerGroupService for ConsumerGroupService {
    async fn create_group(
        &self,
        request: Request<pb::CreateGroupRequest>,
    ) -> Result<Response<pb::CreateGroupResponse>, Status> {
        observed(&self.metrics, "CreateGroup", async {
            let account = self.account(&request, &request.get_ref().account)?;
            let r = request.into_inner();
            group_name("name", &r.name)?;
            for (field, values) in [("tickets", &r.tickets), ("scenes", &r.scenes)] {
                if values.len() > self.max_filter_entries {
                    return Err(ApiError::invalid(
                        field,
                        format!("at most {} values", self.max_filter_entries),
                    )
                    .into());
                }
                if values.iter().any(|v| v.len() > self.max_filter_entry_bytes) {
                    return Err(ApiError::invalid(
                        field,
                        format!("at most {} bytes each", self.max_filter_entry_bytes),
                    )
                    .into());
                }
            }
            let kinds = validate::kinds(&r.types)?;
            let ack_deadline_seconds = match r.ack_deadline_seconds {
                0 => DEFAULT_DEADLINE_SECONDS,
                s if s <= MAX_DEADLINE_SECONDS => s,
                s => {
                    return Err(ApiError::invalid(
                        "ack_deadline_seconds",
                        format!("1 to {MAX_DEADLINE_SECONDS}, got {s}"),
                    )
                    .into());
                }
            };
            let max_unacked_per_member = match r.max_unacked_per_member {
                0 => DEFAULT_MAX_UNACKED,
                n if n <= MAX_UNACKED => n,
                n => {
                    return Err(ApiError::invalid(
                        "max_unacked_per_member",
                        format!("1 to {MAX_UNACKED}, got {n}"),
                    )
                    .into());
                }
            };
            let start = match (r.start(), r.start_after.as_str()) {
                (pb::GroupStart::Unspecified, "") | (pb::GroupStart::Now, "") => Start::Now,
                (pb::GroupStart::Oldest, "") => Start::Oldest,
                (pb::GroupStart::Unspecified, cursor) => {
                    Start::After(cursors("start_after", &[cursor.to_owned()])?[0])
                }
                (_, _) => {
                    return Err(ApiError::invalid(
                        "start_after",
                        "set either start or start_after, not both",
                    )
                    .into());
                }
            };
            let spec = GroupSpec {
                name: r.name,
                account,
                tickets: r.tickets,
                scenes: r.scenes,
                kinds: kinds
                    .into_iter()
                    .map(|k| GroupSpec::kind_name(k).to_owned())
                    .collect(),
                ack_deadline_seconds,
                max_deliveries: r.max_deliveries,
                max_unacked_per_member,
                create_ms: 0,
            };
            let position = self
                .groups
                .create(spec.clone(), start)
                .await
                .map_err(ApiError::from)?;
            tracing::info!(group = %spec.key(), %position, "consumer group created");
            let created = self
                .groups
                .list(|a| a == spec.account)
                .await
                .map_err(ApiError::from)?
                .into_iter()
                .find(|g| g.spec.name == spec.name)
                .map_or(spec, |g| g.spec);
            Ok(Response::new(pb::CreateGroupResponse {
                group: Some(to_pb_group(&created)),
                position: position.to_string(),
            }))
        })
        .await
    }

    async fn list_groups(
        &self,
        request: Request<pb::ListGroupsRequest>,
    ) -> Result<Response<pb::ListGroupsResponse>, Status> {
        observed(&self.metrics, "ListGroups", async {
            let only = match &*request.get_ref().account {
                "" => None,
                account => Some(self.account(&request, account)?),
            };
            let caller = request.extensions().get::<Caller>().cloned();
            let groups = self
                .groups
                .list(|account| {
                    only.as_deref().is_none_or(|only| only == account)
                        && caller.as_ref().is_none_or(|c| c.may_use(account))
                })
                .await
                .map_err(ApiError::from)?;
            Ok(Response::new(pb::ListGroupsResponse {
                groups: groups.into_iter().map(to_pb_status).collect(),
            }))
        })
        .await
    }

    async fn delete_group(
        &self,
        request: Request<pb::DeleteGroupRequest>,
    ) -> Result<Response<pb::DeleteGroupResponse>, Status> {
        observed(&self.metrics, "DeleteGroup", async {
            let account = self.account(&request, &request.get_ref().account)?;
            let name = &request.get_ref().name;
            group_name("name", name)?;
            self.groups
                .delete(&account, name)
                .await
                .map_err(ApiError::from)?;
            tracing::info!(group = %format!("{account}/{name}"), "consumer group deleted");
            Ok(Response::new(pb::DeleteGroupResponse {}))
        })
        .await
    }

    async fn seek_group(
        &self,
        request: Request<pb::SeekGroupRequest>,
    ) -> Result<Response<pb::SeekGroupResponse>, Status> {
        observed(&self.metrics, "SeekGroup", async {
            let account = self.account(&request, &request.get_ref().account)?;
            let r = request.into_inner();
            group_name("name", &r.name)?;
            let target = match r.target {
                Some(pb::seek_group_request::Target::Cursor(cursor)) => {
                    SeekTarget::Cursor(cursors("cursor", &[cursor])?[0])
                }
                Some(pb::seek_group_request::Target::Time(time)) => SeekTarget::Time(
                    std::time::SystemTime::try_from(time)
                        .map_err(|e| ApiError::invalid("time", e.to_string()))?,
                ),
                None => return Err(ApiError::invalid("cursor", "set cursor or time").into()),
            };
            let position = self
                .groups
                .seek(&account, &r.name, target)
                .await
                .map_err(ApiError::from)?;
            tracing::info!(group = %format!("{account}/{}", r.name), %position, "consumer group moved");
            Ok(Response::new(pb::SeekGroupResponse {
                position: position.to_string(),
            }))
        })
        .await
    }

    type ConsumeGroupStream = Out<pb::ConsumeGroupResponse>;

    async fn consume_group(
        &self,
        request: Request<Streaming<pb::ConsumeGroupRequest>>,
    ) -> Result<Response<Self::ConsumeGroupStream>, Status> {
        observed(&self.metrics, "ConsumeGroup", async {
            let peer = request.remote_addr();
            let caller = request.extensions().get::<Caller>().cloned();
            let mut inbound = request.into_inner();
            let first = inbound.message().await?.ok_or_else(|| {
                ApiError::invalid("group", "the first request names the group to join")
            })?;
            let account = self
                .accounts
                .select("account", &first.account)?
                .app_id()
                .to_owned();
            if let Some(caller) = &caller
                && !caller.may_use(&account)
            {
                return Err(caller.denied(&account).into());
            }
            group_name("group", &first.group)?;
            let name = member_name(&first.member, peer);
            let member = self
                .groups
                .join(&account, &first.group, name)
                .await
                .map_err(ApiError::from)?;
            let first_acks = parse_acks(
                &first.ack_ids,
                &first.extend_ack_ids,
                first.extend_seconds,
                &first.nack_ids,
            )?;
            let (tx, rx) = mpsc::channel(4);
            tokio::spawn(serve_member(
                member,
                Some(inbound),
                Some(first_acks),
                tx,
                |deliveries, acked_ids| pb::ConsumeGroupResponse {
                    deliveries,
                    acked_ids,
                },
            ));
            let stream: Self::ConsumeGroupStream = Box::pin(ReceiverStream::new(rx));
            Ok(Response::new(stream))
        })
        .await
    }

    type ReceiveGroupStream = Out<pb::ReceiveGroupResponse>;

    async fn receive_group(
        &self,
        request: Request<pb::ReceiveGroupRequest>,
    ) -> Result<Response<Self::ReceiveGroupStream>, Status> {
        observed(&self.metrics, "ReceiveGroup", async {
            let account = self.account(&request, &request.get_ref().account)?;
            let peer = request.remote_addr();
            let r = request.into_inner();
            group_name("group", &r.group)?;
            let member = self
                .groups
                .join(&account, &r.group, member_name(&r.member, peer))
                .await
                .map_err(ApiError::from)?;
            let (tx, rx) = mpsc::channel(4);
            tokio::spawn(serve_member(member, None, None, tx, |deliveries, _| {
                pb::ReceiveGroupResponse { deliveries }
            }));
            let stream: Self::ReceiveGroupStream = Box::pin(ReceiverStream::new(rx));
            Ok(Response::new(stream))
        })
        .await
    }

    async fn ack_group_events(
        &self,
        request: Request<pb::AckGroupEventsRequest>,
    ) -> Result<Response<pb::AckGroupEventsResponse>, Status> {
        observed(&self.metrics, "AckGroupEvents", async {
            let account = self.account(&request, &request.get_ref().account)?;
            let r = request.into_inner();
            group_name("group", &r.group)?;
            let acks = parse_acks(&r.ack_ids, &r.extend_ack_ids, r.extend_seconds, &r.nack_ids)?;
            let outcome = self
                .groups
                .ack(
                    &account,
                    &r.group,
                    &acks.acks,
                    &acks.extend,
                    acks.extend_by,
                    &acks.nacks,
                )
                .await
                .map_err(ApiError::from)?;
            Ok(Response::new(pb::AckGroupEventsResponse {
                acked: u32::try_from(outcome.acked.len()).unwrap_or(u32::MAX),
            }))
        })
        .await
    }

    async fn list_dead_letters(
        &self,
        request: Request<pb::ListDeadLettersRequest>,
    ) -> Result<Response<pb::ListDeadLettersResponse>, Status> {
        observed(&self.metrics, "ListDeadLetters", async {
            let account = self.account(&request, &request.get_ref().account)?;
            let r = request.into_inner();
            group_name("name", &r.name)?;
            let page = match r.page_size {
                0 => 1_000,
                n => n.min(10_000) as usize,
            };
            let (dead, total) = self
                .groups
                .dead_letters(&account, &r.name, page)
                .await
                .map_err(ApiError::from)?;
            Ok(Response::new(pb::ListDeadLettersResponse {
                dead_letters: dead
                    .iter()
                    .map(|d| pb::DeadLetter {
                        event: Some(to_pb_event(&d.event)),
                        cursor: d.cursor.to_string(),
                        delivery_count: d.deliveries,
                        dead_time: Some(millis_to_timestamp(d.dead_ms)),
                    })
                    .collect(),
                total,
            }))
        })
        .await
    }

    async fn replay_dead_letters(
        &self,
        request: Request<pb::ReplayDeadLettersRequest>,
    ) -> Result<Response<pb::ReplayDeadLettersResponse>, Status> {
        observed(&self.metrics, "ReplayDeadLetters", async {
            let account = self.account(&request, &request.get_ref().account)?;
            let r = request.into_inner();
            group_name("name", &r.name)?;
            let chosen = cursors("cursors", &r.cursors)?;
            let replayed = self
                .groups
                .replay(&account, &r.name, &chosen)
                .await
                .map_err(ApiError::from)?;
            tracing::info!(group = %format!("{account}/{}", r.name), replayed, "dead letters replayed");
            Ok(Response::new(pb::ReplayDeadLettersResponse { replayed }))
        })
        .await
    }
}

fn member_name(asked: &str, peer: Option<std::net::SocketAddr>) -> String {
    match asked {
        "" => peer.map_or_else(|| "unknown".to_owned(), |p| p.to_string()),
        name => name.chars().take(MAX_NAME).collect(),
    }
}

/// Acknowledgements of one request, parsed.
#[derive(Debug, Default)]
struct Acks {
    acks: Vec<Cursor>,
    extend: Vec<Cursor>,
    extend_by: Option<Duration>,
    nacks: Vec<Cursor>,
}

impl Acks {
    fn is_empty(&self) -> bool {
        self.acks.is_empty() && self.extend.is_empty() && self.nacks.is_empty()
    }
}

fn parse_acks(
    acks: &[String],
    extend: &[String],
    extend_seconds: u32,
    nacks: &[String],
) -> Result<Acks, ApiError> {
    Ok(Acks {
        acks: cursors("ack_ids", acks)?,
        extend: cursors("extend_ack_ids", extend)?,
        extend_by: extension(extend_seconds)?,
        nacks: cursors("nack_ids", nacks)?,
    })
}

/// One member's stream: events out (at most [`MAX_PER_RESPONSE`] per message), and for a
/// bidirectional stream acknowledgements in, each confirmed once durable. Ends when the
/// client goes, the group is deleted or the service stops; dropping the member gives its
/// held events back to the group.
async fn serve_member<T: Send + 'static>(
    mut member: Member,
    mut inbound: Option<Streaming<pb::ConsumeGroupRequest>>,
    first: Option<Acks>,
    tx: mpsc::Sender<Result<T, Status>>,
    make: fn(Vec<pb::GroupDelivery>, Vec<String>) -> T,
) {
    let mut outbox: VecDeque<GroupDelivery> = VecDeque::new();
    let mut acked_out: Vec<String> = Vec::new();
    let mut confirming = FuturesUnordered::new();
    if let Some(acks) = first.filter(|a| !a.is_empty()) {
        confirming.push(member.ack(&acks.acks, &acks.extend, acks.extend_by, &acks.nacks));
    }
    let name = member.spec().name.clone();
    loop {
        let has_output = !outbox.is_empty() || !acked_out.is_empty();
        tokio::select! {
            permit = tx.reserve(), if has_output => {
                let Ok(permit) = permit else { break };
                let n = outbox.len().min(MAX_PER_RESPONSE);
                let deliveries = outbox.drain(..n).map(|d| to_pb_delivery(&d)).collect();
                permit.send(Ok(make(deliveries, std::mem::take(&mut acked_out))));
            }
            next = member.next(), if outbox.is_empty() => match next {
                Ok(MemberEvent::Deliveries(deliveries)) => outbox.extend(deliveries),
                Ok(MemberEvent::Deleted) => {
                    let _ = tx.send(Err(ApiError::GroupDeleted { name }.into())).await;
                    break;
                }
                Ok(MemberEvent::ShuttingDown) => {
                    let _ = tx.send(Err(ApiError::GroupShuttingDown.into())).await;
                    break;
                }
                Err(e) => {
                    let _ = tx.send(Err(ApiError::from(e).into())).await;
                    break;
                }
            },
            message = next_message(&mut inbound), if inbound.is_some() => match message {
                Ok(Some(request)) => match parse_acks(
                    &request.ack_ids,
                    &request.extend_ack_ids,
                    request.extend_seconds,
                    &request.nack_ids,
                ) {
                    Ok(acks) => confirming.push(member.ack(&acks.acks, &acks.extend, acks.extend_by, &acks.nacks)),
                    Err(e) => {
                        let _ = tx.send(Err(e.into())).await;
                        break;
                    }
                },
                // The client closed its side, or the connection broke: the member leaves
                // (as with Pub/Sub's StreamingPull).
                Ok(None) | Err(_) => break,
            },
            Some(confirmed) = confirming.next(), if !confirming.is_empty() => match confirmed {
                Ok(acked) => acked_out.extend(acked.iter().map(Cursor::to_string)),
                Err(e) => {
                    let e: GroupError = e;
                    let _ = tx.send(Err(ApiError::from(e).into())).await;
                    break;
                }
            },
            () = tx.closed(), if !has_output => break,
        }
    }
}

async fn next_message(
    inbound: &mut Option<Streaming<pb::ConsumeGroupRequest>>,
) -> Result<Option<pb::ConsumeGroupRequest>, Status> {
    match inbound {
        Some(stream) => stream.message().await,
        None => std::future::pending().await,
    }
}
