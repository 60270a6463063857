//! Permanent tickets already minted, so a scene is never spent twice: an account gets
//! 100,000 permanent codes, ever. A permanent CreateTicket for a known scene answers the
//! stored ticket without calling WeChat. The tickets live in the event store's records
//! ([`Records`]), written (and, on the durable backend, synced) before the caller hears
//! back, so two restarts in a row never mint a second code for a scene. A
//! `wechat-qr-permanent.jsonl` of an older version is imported once on start.
//!
//! An account may have a `permanent_budget`: the most permanent codes the store may hold
//! for it. The codes already in the store count against it, so the budget holds across
//! restarts; a scene already minted is answered without spending any; past the budget a
//! new scene is refused before WeChat is called.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::Arc,
};

use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use super::{QrTicket, Scene, WeChatError};
use crate::events::{LogError, Records};

/// Prefix of this module's record keys in the shared store.
const PREFIX: &str = "permanent/";
/// Marks a legacy JSON-lines file as imported (the file's path follows).
const IMPORTED: &str = "permanent-imported/";

/// Why the permanent tickets could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The older version's file exists but cannot be read.
    #[error("cannot import the permanent ticket file {path}: {source}")]
    Legacy {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The store could not be read or written.
    #[error("cannot load permanent tickets: {0}")]
    Store(#[from] LogError),
}

#[derive(Debug, Serialize, Deserialize)]
struct Record {
    app_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    scene_id: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    scene_str: Option<String>,
    ticket: String,
    url: String,
}

impl Record {
    fn scene(&self) -> Option<Scene> {
        match (self.scene_id, &self.scene_str) {
            (Some(id), _) => Some(Scene::Id(id)),
            (None, Some(s)) => Some(Scene::Str(s.clone())),
            (None, None) => None,
        }
    }

    fn ticket(&self) -> QrTicket {
        QrTicket {
            ticket: self.ticket.clone(),
            url: self.url.clone(),
            expire_seconds: None,
        }
    }
}

/// Adds the permanent tickets among `records` that `tickets` does not know yet.
fn learn(tickets: &mut HashMap<String, KnownTicket>, records: Vec<(String, Vec<u8>)>) {
    for (key, value) in records {
        if !key.starts_with(PREFIX) || tickets.contains_key(&key) {
            continue;
        }
        match serde_json::from_slice::<Record>(&value) {
            Ok(record) => {
                if let Some(scene) = record.scene() {
                    tickets.insert(
                        key,
                        KnownTicket {
                            ticket: record.ticket(),
                            app_id: record.app_id,
                            scene,
                        },
                    );
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "skipping an unreadable permanent ticket record")
            }
        }
    }
}

fn key(app_id: &str, scene: &Scene) -> String {
    match scene {
        Scene::Id(id) => format!("{PREFIX}{app_id}\u{0}id\u{0}{id}"),
        Scene::Str(s) => format!("{PREFIX}{app_id}\u{0}str\u{0}{s}"),
    }
}

/// A permanent ticket this deployment minted.
#[derive(Debug, Clone)]
pub struct KnownTicket {
    /// The account it belongs to.
    pub app_id: String,
    /// Its scene.
    pub scene: Scene,
    /// The ticket.
    pub ticket: QrTicket,
}

/// The permanent tickets of this deployment.
#[derive(Debug)]
pub struct PermanentTickets {
    records: Arc<dyn Records>,
    /// An async lock held across the upstream call: permanent codes are rare, and
    /// serialising them is what makes "never twice" hold under concurrency.
    tickets: Mutex<HashMap<String, KnownTicket>>,
    /// AppID → the most permanent codes the store may hold for it. A std lock held only
    /// to read or replace one entry; a reload (SIGHUP) changes it while serving.
    budgets: std::sync::RwLock<HashMap<String, u64>>,
}

impl PermanentTickets {
    /// Loads the tickets kept in `records`, first importing `legacy` (an older version's
    /// JSON-lines file) if it exists and was not imported before.
    pub async fn open(
        records: Arc<dyn Records>,
        legacy: Option<&Path>,
    ) -> Result<Self, StoreError> {
        if let Some(path) = legacy {
            import_legacy(records.as_ref(), path).await?;
        }
        let mut tickets = HashMap::new();
        learn(&mut tickets, records.all().await?);
        Ok(Self {
            records,
            tickets: Mutex::new(tickets),
            budgets: std::sync::RwLock::new(HashMap::new()),
        })
    }

    /// Caps the permanent codes kept for `app_id` at `budget` (`None`: no cap).
    pub fn with_budget(self, app_id: &str, budget: Option<u64>) -> Self {
        self.set_budget(app_id, budget);
        self
    }

    /// Replaces the budget of `app_id` (`None`: no cap) for the next code minted; one
    /// being minted finishes under the budget it started with.
    pub fn set_budget(&self, app_id: &str, budget: Option<u64>) {
        let mut budgets = self.budgets.write().expect("budget lock poisoned");
        match budget {
            Some(budget) => budgets.insert(app_id.to_owned(), budget),
            None => budgets.remove(app_id),
        };
    }

    /// The permanent budget of `app_id`; `None` without one.
    pub fn budget(&self, app_id: &str) -> Option<u64> {
        self.budgets
            .read()
            .expect("budget lock poisoned")
            .get(app_id)
            .copied()
    }

    /// How many more permanent codes `app_id` may mint; `None` without a budget.
    pub async fn remaining(&self, app_id: &str) -> Option<u64> {
        let budget = self.budget(app_id)?;
        Some(budget.saturating_sub(count(&*self.tickets.lock().await, app_id)))
    }

    /// Every permanent ticket known, for the simulator to recognise after a restart.
    pub async fn known(&self) -> Vec<KnownTicket> {
        self.tickets.lock().await.values().cloned().collect()
    }

    /// The stored ticket for `scene`, or the one `create` mints (then stored). The bool
    /// says whether `create` ran.
    pub async fn get_or_create<Fut>(
        &self,
        app_id: &str,
        scene: &Scene,
        create: Fut,
    ) -> Result<(QrTicket, bool), WeChatError>
    where
        Fut: Future<Output = Result<QrTicket, WeChatError>>,
    {
        let key = key(app_id, scene);
        let mut tickets = self.tickets.lock().await;
        if let Some(known) = tickets.get(&key) {
            return Ok((known.ticket.clone(), false));
        }
        let budget = self.budget(app_id);
        // Shared by several replicas, a budget is the deployment's: an account's budgeted
        // codes are minted one at a time under a deployment-wide claim, counting what
        // every replica has minted (a single process holds no claim and knows them all).
        let budget_claim = match budget {
            Some(_) => self
                .records
                .claim(&format!("{PREFIX}{app_id}\u{0}budget"))
                .await
                .map_err(shared_state)?,
            None => None,
        };
        if budget_claim.is_some() {
            learn(
                &mut tickets,
                self.records.all().await.map_err(shared_state)?,
            );
            if let Some(known) = tickets.get(&key) {
                return Ok((known.ticket.clone(), false));
            }
        }
        if let Some(budget) = budget
            && count(&tickets, app_id) >= budget
        {
            return Err(WeChatError::PermanentBudgetExhausted { budget });
        }
        // Shared by several replicas, the store may hold a ticket another one minted:
        // hold the deployment-wide claim on the scene, then look again before minting.
        let claim = self.records.claim(&key).await.map_err(shared_state)?;
        if claim.is_some()
            && let Some(record) = self.records.get(&key).await.map_err(shared_state)?
            && let Ok(record) = serde_json::from_slice::<Record>(&record)
        {
            let ticket = record.ticket();
            tickets.insert(
                key,
                KnownTicket {
                    app_id: app_id.to_owned(),
                    scene: scene.clone(),
                    ticket: ticket.clone(),
                },
            );
            return Ok((ticket, false));
        }
        let ticket = create.await?;
        let record = encode_record(app_id, scene, &ticket);
        // The code is minted either way; failing to remember it is logged loudly rather
        // than hiding the ticket from the caller (this process still remembers it).
        if let Err(e) = self.records.put(key.clone(), record).await {
            tracing::error!(error = %e, "cannot record a permanent ticket");
        }
        drop(claim);
        drop(budget_claim);
        tickets.insert(
            key,
            KnownTicket {
                app_id: app_id.to_owned(),
                scene: scene.clone(),
                ticket: ticket.clone(),
            },
        );
        Ok((ticket, true))
    }
}

/// A shared store that cannot be reached: nothing was minted, the caller may retry.
fn shared_state(e: LogError) -> WeChatError {
    WeChatError::Unreachable {
        endpoint: "shared state (Redis)",
        kind: super::TransportKind::Connect,
        detail: e.to_string(),
    }
}

/// The permanent codes kept for `app_id`.
fn count(tickets: &HashMap<String, KnownTicket>, app_id: &str) -> u64 {
    tickets.values().filter(|t| t.app_id == app_id).count() as u64
}

fn encode_record(app_id: &str, scene: &Scene, ticket: &QrTicket) -> Vec<u8> {
    let record = Record {
        app_id: app_id.to_owned(),
        scene_id: match scene {
            Scene::Id(id) => Some(*id),
            Scene::Str(_) => None,
        },
        scene_str: match scene {
            Scene::Str(s) => Some(s.clone()),
            Scene::Id(_) => None,
        },
        ticket: ticket.ticket.clone(),
        url: ticket.url.clone(),
    };
    serde_json::to_vec(&record).expect("records serialize")
}

/// Imports an older version's file once. That file was appended a line per ticket, so a
/// crash could leave a torn last line — and the next ticket appended right after it, on
/// the same line — or a line cut inside a UTF-8 character: every whole record is kept.
async fn import_legacy(records: &dyn Records, path: &Path) -> Result<(), StoreError> {
    let marker = format!("{IMPORTED}{}", path.display());
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(StoreError::Legacy {
                path: path.to_owned(),
                source,
            });
        }
    };
    let existing: std::collections::HashSet<String> = records
        .all()
        .await?
        .into_iter()
        .map(|(key, _)| key)
        .collect();
    if existing.contains(&marker) {
        return Ok(());
    }
    let mut imported = 0usize;
    for (number, line) in bytes.split(|&b| b == b'\n').enumerate() {
        let line = String::from_utf8_lossy(line);
        if line.trim().is_empty() {
            continue;
        }
        let Some(record) = parse_line(&line) else {
            tracing::warn!(
                path = %path.display(),
                line = number + 1,
                "skipping a torn line of the permanent ticket file"
            );
            continue;
        };
        let Some(scene) = record.scene() else {
            continue;
        };
        let key = key(&record.app_id, &scene);
        if existing.contains(&key) {
            continue;
        }
        records
            .put(key, encode_record(&record.app_id, &scene, &record.ticket()))
            .await?;
        imported += 1;
    }
    records.put(marker, Vec::new()).await?;
    tracing::info!(
        path = %path.display(),
        imported,
        "imported the permanent tickets of an older version into the data directory; the file is no longer read"
    );
    Ok(())
}

/// A whole record, or the last whole record of a line a torn write merged into another.
fn parse_line(line: &str) -> Option<Record> {
    serde_json::from_str(line).ok().or_else(|| {
        let start = line.rfind("{\"app_id\"")?;
        serde_json::from_str(&line[start..]).ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_torn_line_does_not_swallow_the_next_record() {
        let merged = r#"{"app_id":"wx1","scene_id":6,"tic{"app_id":"wx1","scene_id":7,"ticket":"t7","url":"u7"}"#;
        let record = parse_line(merged).expect("the whole record after the tear");
        assert_eq!(record.scene_id, Some(7));
        assert!(parse_line(r#"{"app_id":"wx1","scene_id":8,"tic"#).is_none());
    }
}
