//! Permanent tickets already minted, so a scene is never spent twice: an account gets
//! 100,000 permanent codes, ever. A permanent CreateTicket for a known scene answers the
//! stored ticket without calling WeChat. The store is an append-only file of JSON lines
//! (one per ticket, synced before the caller hears back), read at start; a torn last line
//! after a crash is skipped with a warning. Without a path it lives in memory only.

use std::{
    collections::HashMap,
    fs::{File, OpenOptions},
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use super::{QrTicket, Scene, WeChatError};

/// Why the store could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("cannot open permanent ticket store {path}: {source}")]
pub struct StoreError {
    path: PathBuf,
    source: std::io::Error,
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

fn key(app_id: &str, scene: &Scene) -> String {
    match scene {
        Scene::Id(id) => format!("{app_id}\u{0}id\u{0}{id}"),
        Scene::Str(s) => format!("{app_id}\u{0}str\u{0}{s}"),
    }
}

#[derive(Debug)]
struct Inner {
    tickets: HashMap<String, QrTicket>,
    file: Option<File>,
}

/// The permanent tickets of this deployment.
#[derive(Debug)]
pub struct PermanentTickets {
    path: Option<PathBuf>,
    /// An async lock held across the upstream call: permanent codes are rare, and
    /// serialising them is what makes "never twice" hold under concurrency.
    inner: Mutex<Inner>,
}

impl PermanentTickets {
    /// Opens (or creates) the store at `path`, or a memory-only store.
    pub fn open(path: Option<&Path>) -> Result<Self, StoreError> {
        let mut tickets = HashMap::new();
        let file = match path {
            None => None,
            Some(path) => {
                let error = |source| StoreError {
                    path: path.to_owned(),
                    source,
                };
                if path.exists() {
                    let reader = BufReader::new(File::open(path).map_err(error)?);
                    for (number, line) in reader.lines().enumerate() {
                        let line = line.map_err(error)?;
                        match serde_json::from_str::<Record>(&line) {
                            Ok(record) => {
                                let scene = match (record.scene_id, record.scene_str) {
                                    (Some(id), _) => Scene::Id(id),
                                    (None, Some(s)) => Scene::Str(s),
                                    (None, None) => continue,
                                };
                                tickets.insert(
                                    key(&record.app_id, &scene),
                                    QrTicket {
                                        ticket: record.ticket,
                                        url: record.url,
                                        expire_seconds: None,
                                    },
                                );
                            }
                            Err(e) => tracing::warn!(
                                line = number + 1,
                                error = %e,
                                "skipping unreadable line in the permanent ticket store"
                            ),
                        }
                    }
                }
                Some(
                    OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(path)
                        .map_err(error)?,
                )
            }
        };
        Ok(Self {
            path: path.map(Path::to_owned),
            inner: Mutex::new(Inner { tickets, file }),
        })
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
        let mut inner = self.inner.lock().await;
        if let Some(ticket) = inner.tickets.get(&key) {
            return Ok((ticket.clone(), false));
        }
        let ticket = create.await?;
        if let Some(file) = &mut inner.file {
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
            let mut line = serde_json::to_vec(&record).expect("records serialize");
            line.push(b'\n');
            // The code is minted either way; failing to remember it is logged loudly
            // rather than hiding the ticket from the caller.
            if let Err(e) = file.write_all(&line).and_then(|()| file.sync_data()) {
                tracing::error!(path = ?self.path, error = %e, "cannot record a permanent ticket");
            }
        }
        inner.tickets.insert(key, ticket.clone());
        Ok((ticket, true))
    }
}
