//! The lease in etcd (`lease.backend: etcd`): the same [`Lease`] the loop uses with term files,
//! kept in an etcd cluster instead of on the shared storage.
//!
//! # Keys (under the cluster's `prefix`)
//!
//! - `<prefix>/leader`: the current term's record (JSON, as in a term file), attached to an etcd
//!   lease whose TTL is `timing.lease_timeout` rounded up to whole seconds. Every renewal keeps
//!   that etcd lease alive; when the holder stops, etcd deletes the key once the TTL has run out.
//! - `<prefix>/terms/<N>`: one record per term, `N` zero-padded to 20 digits so that key order is
//!   term order. Written in the same transaction as the leader key (claim, every renewal, release,
//!   hand-over), so it always holds the same record; it outlives the leader key and is the
//!   history. The claim of term N deletes the terms older than the last [`HISTORY_KEEP`].
//! - `<prefix>/paused`: present while the cluster is paused.
//!
//! # Claim and renewal
//!
//! The term is the fencing token and only grows. The claim of term N+1 is one transaction that
//! succeeds only if no term ≥ N+1 exists and the leader key is either absent (expired, or never
//! set) or is the exact revision this node just read and found to be term N `released`, handed
//! over to this node, attached to no etcd lease (kept alive by nobody: not written by a holder),
//! or attached to this process's own etcd lease (its core claims only once it holds no term). A renewal (and a release or hand-over) is one transaction guarded on the leader key
//! still being attached to this node's etcd lease, preceded by a keep-alive of that lease: a stale
//! holder can never overwrite a newer leader, and a renewal that fails or times out is an error.
//!
//! # How an expired holder looks to the decision core
//!
//! The core is the same for both backends: it takes over when the newest term says `released`,
//! is handed over to it, or its counter has been still for `lease_timeout` on its own clock.
//! `observe` presents the newest `terms/<N>` record, which equals the leader key while that
//! exists. When the holder dies, its counter freezes there; the core waits out `lease_timeout`
//! as it does with files, and only then claims. The claim needs the leader key gone as well, which
//! etcd does at TTL after the holder's last keep-alive: at the earliest `lease_timeout` after the
//! start of the holder's last successful renewal, which is a margin after the holder fenced
//! itself by its own clock. Both conditions must hold, so neither an etcd that expires a lease
//! early (or an operator deleting the key by hand) nor an observer that missed a renewal can let
//! a standby in while the holder may still act. A claim refused because the key has not expired
//! yet is retried by the next tick, and the watch on the leader key wakes the loop the moment etcd
//! deletes it, so a takeover lands at about the key's expiry.
//!
//! # Calls
//!
//! The trait is synchronous and runs on the loop's blocking threads ([`crate::io::lease::LeaseIo`]).
//! Each call is handed to a small runtime owned by the [`EtcdLease`] and waited for; it never
//! outlives its budget (a little under the `LeaseIo` deadline). Reads are linearizable. The client
//! keeps one connection per endpoint and sticks to the member that answered last, moving to the
//! next one at the first timeout or failure, so a stopped or cut-off member costs one attempt, not
//! every other call. Members without a leader refuse calls at once (`require leader`).

use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, DeleteOptions, EventType, GetOptions, PutOptions,
    SortOrder, SortTarget, Txn, TxnOp, TxnOpResponse,
};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::io::lease::{
    parse_term_file, unix_ms, Lease, LeaseError, LeaseSnapshot, TermFile, TermRecord, HISTORY_KEEP,
};
use crate::secret::Secret;

/// The validated `lease.etcd` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdSettings {
    /// `http://host:port` or `https://host:port`, all of one scheme.
    pub endpoints: Vec<String>,
    /// Starts with `/`, no trailing `/`.
    pub prefix: String,
    /// PEM of the CA that signed the members' certificates (https endpoints).
    pub ca_pem: Option<String>,
    /// PEM of the client certificate and its key, for client-certificate authentication.
    pub identity: Option<(String, Secret)>,
    /// etcd user and password (read from `password_file`).
    pub user: Option<(String, Secret)>,
}

/// The keys of one cluster's lease.
#[derive(Debug, Clone)]
struct Keys {
    leader: String,
    terms: String,
    /// The end of the `terms/` range (`terms0`: `0` follows `/`).
    terms_end: String,
    paused: String,
}

impl Keys {
    fn new(prefix: &str) -> Keys {
        Keys {
            leader: format!("{prefix}/leader"),
            terms: format!("{prefix}/terms/"),
            terms_end: format!("{prefix}/terms0"),
            paused: format!("{prefix}/paused"),
        }
    }

    fn term(&self, term: u64) -> String {
        format!("{}{term:020}", self.terms)
    }

    fn term_of(&self, key: &[u8]) -> Option<u64> {
        std::str::from_utf8(key)
            .ok()?
            .strip_prefix(&self.terms)?
            .parse()
            .ok()
    }
}

/// The etcd lease this node holds: the term and the etcd lease its leader key is attached to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Held {
    term: u64,
    lease: i64,
}

/// The lease in an etcd cluster. See the module documentation.
pub struct EtcdLease {
    inner: Arc<Inner>,
    runtime: Option<tokio::runtime::Runtime>,
}

struct Inner {
    endpoints: Vec<String>,
    options: ConnectOptions,
    /// One client per endpoint, made on first use (connecting needs the member up).
    clients: Mutex<Vec<Option<Client>>>,
    /// The endpoint to try first: the one that answered last.
    preferred: AtomicUsize,
    keys: Keys,
    /// TTL of the etcd lease, in whole seconds.
    ttl: i64,
    /// How long one call may take, all attempts included.
    budget: Duration,
    held: Mutex<Option<Held>>,
    /// The highest term seen: observe reads the terms from there on (terms only grow).
    highest_known: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// How long one etcd call may take inside the loop's `LeaseIo` deadline: a little less, so that
/// the call returns its own error (naming the members and why) instead of being abandoned.
pub fn call_budget(deadline: Duration) -> Duration {
    deadline.saturating_sub((deadline / 10).min(Duration::from_millis(100)))
}

/// The budget of one call from the command line (`jenkins-ha history`), where nothing waits on it.
pub const CLI_BUDGET: Duration = Duration::from_secs(5);

/// The TTL of the etcd lease for `lease_timeout`: rounded up to whole seconds, never shorter.
pub fn ttl_for(lease_timeout: Duration) -> i64 {
    let ms = lease_timeout.as_millis().max(1);
    i64::try_from(ms.div_ceil(1000)).unwrap_or(i64::MAX)
}

impl EtcdLease {
    /// A lease in the cluster `settings` names. Connects lazily: a cluster that is down now makes
    /// calls fail (each within `budget`), not this.
    pub fn new(
        settings: &EtcdSettings,
        lease_timeout: Duration,
        budget: Duration,
    ) -> Result<EtcdLease, String> {
        let mut options = ConnectOptions::new()
            .with_require_leader(true)
            .with_connect_timeout(budget)
            // etcd refuses pings more often than every 5 s (--grpc-keepalive-min-time); the
            // watch has its own, faster liveness check.
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5))
            .with_keep_alive_while_idle(false)
            .with_auto_token_refresh(true);
        if let Some((user, password)) = &settings.user {
            options = options.with_user(user.clone(), password.expose().to_string());
        }
        if settings.ca_pem.is_some() || settings.identity.is_some() {
            let mut tls = etcd_client::TlsOptions::new();
            if let Some(ca) = &settings.ca_pem {
                tls = tls.ca_certificate(etcd_client::Certificate::from_pem(ca));
            }
            if let Some((cert, key)) = &settings.identity {
                tls = tls.identity(etcd_client::Identity::from_pem(cert, key.expose()));
            }
            options = options.with_tls(tls);
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("etcd-lease")
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the etcd client's runtime: {e}"))?;
        Ok(EtcdLease {
            inner: Arc::new(Inner {
                endpoints: settings.endpoints.clone(),
                options,
                clients: Mutex::new(vec![None; settings.endpoints.len()]),
                preferred: AtomicUsize::new(0),
                keys: Keys::new(&settings.prefix),
                ttl: ttl_for(lease_timeout),
                budget,
                held: Mutex::new(None),
                highest_known: AtomicU64::new(0),
            }),
            runtime: Some(runtime),
        })
    }

    /// Runs `f` on the client's runtime and waits for its result (from any thread).
    fn block<T, Fut>(&self, f: impl FnOnce(Arc<Inner>) -> Fut) -> Result<T, LeaseError>
    where
        T: Send + 'static,
        Fut: Future<Output = Result<T, LeaseError>> + Send + 'static,
    {
        let Some(runtime) = &self.runtime else {
            return Err(LeaseError::Etcd("the client is shut down".into()));
        };
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let fut = f(self.inner.clone());
        runtime.spawn(async move {
            let _ = tx.send(fut.await);
        });
        rx.recv()
            .unwrap_or_else(|_| Err(LeaseError::Etcd("the client's runtime stopped".into())))
    }
}

impl Drop for EtcdLease {
    fn drop(&mut self) {
        // Never blocks, so dropping the lease inside the daemon's runtime is fine.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// One failed attempt, and whether trying another member may help.
struct Failure {
    cause: String,
    retry: bool,
}

fn failure(e: etcd_client::Error) -> Failure {
    use etcd_client::Error as E;
    match e {
        E::GRpcStatus(status) => {
            use tonic_code::*;
            let code = status.code() as i32;
            let message = status.message();
            let cause = if message.is_empty() {
                format!("{:?}", status.code())
            } else {
                message.to_string()
            };
            // The cluster said no for a reason every member shares.
            let retry = !matches!(
                code,
                INVALID_ARGUMENT | PERMISSION_DENIED | UNAUTHENTICATED | NOT_FOUND
            );
            Failure {
                cause: crate::escape_controls(&cause),
                retry,
            }
        }
        E::TransportError(t) => Failure {
            cause: chain(&t),
            retry: true,
        },
        E::LeaseKeepAliveError(why) => Failure {
            cause: why,
            retry: false,
        },
        E::InvalidArgs(why) => Failure {
            cause: why,
            retry: false,
        },
        other => Failure {
            cause: crate::escape_controls(&other.to_string()),
            retry: true,
        },
    }
}

/// The gRPC status codes we tell apart (tonic's `Code` as numbers, stable by the gRPC spec).
mod tonic_code {
    pub const NOT_FOUND: i32 = 5;
    pub const PERMISSION_DENIED: i32 = 7;
    pub const INVALID_ARGUMENT: i32 = 3;
    pub const UNAUTHENTICATED: i32 = 16;
}

/// An error and its sources on one line ("transport error: tcp connect error: Connection refused").
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let next = s.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = s.source();
    }
    crate::escape_controls(&text)
}

fn etcd_err(text: impl Into<String>) -> LeaseError {
    LeaseError::Etcd(text.into())
}

impl Inner {
    async fn client(&self, i: usize) -> Result<Client, Failure> {
        if let Some(c) = lock(&self.clients)[i].clone() {
            return Ok(c);
        }
        let c = Client::connect([&self.endpoints[i]], Some(self.options.clone()))
            .await
            .map_err(failure)?;
        lock(&self.clients)[i] = Some(c.clone());
        Ok(c)
    }

    /// Runs `op` on one member after another, from the one that answered last, until one
    /// answers or `deadline` passes. The error names each member tried and what it said.
    async fn call<T, F, Fut>(&self, deadline: Instant, op: F) -> Result<T, LeaseError>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let n = self.endpoints.len();
        let mut causes: Vec<Option<String>> = vec![None; n];
        let mut i = self.preferred.load(Ordering::Relaxed) % n;
        let mut tried = 0usize;
        loop {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            let left = deadline - now;
            // Leave the other members time to answer, unless too little is left to share.
            let slice = if n > 1 && left > Duration::from_millis(200) {
                left / 2
            } else {
                left
            };
            let attempt = async {
                let client = self.client(i).await?;
                op(client).await.map_err(failure)
            };
            match tokio::time::timeout(slice, attempt).await {
                Ok(Ok(value)) => {
                    self.preferred.store(i, Ordering::Relaxed);
                    return Ok(value);
                }
                Ok(Err(f)) if !f.retry => {
                    return Err(etcd_err(format!("{}: {}", self.endpoints[i], f.cause)))
                }
                Ok(Err(f)) => causes[i] = Some(f.cause),
                Err(_) => causes[i] = Some("deadline exceeded (no quorum?)".into()),
            }
            tried += 1;
            i = (i + 1) % n;
            self.preferred.store(i, Ordering::Relaxed);
            // Every member failed at once (an election, say): pause a little before the next round.
            if tried % n == 0 {
                let pause = Duration::from_millis(50)
                    .min(deadline.saturating_duration_since(Instant::now()));
                tokio::time::sleep(pause).await;
            }
        }
        let said: Vec<String> = self
            .endpoints
            .iter()
            .zip(&causes)
            .filter_map(|(e, c)| c.as_ref().map(|c| format!("{e}: {c}")))
            .collect();
        Err(etcd_err(if said.is_empty() {
            format!(
                "{}: deadline exceeded (no quorum?)",
                self.endpoints.join(", ")
            )
        } else {
            said.join("; ")
        }))
    }

    fn deadline(&self) -> Instant {
        Instant::now() + self.budget
    }

    fn parse(&self, key: &[u8], value: &[u8]) -> Option<TermFile> {
        let term = self.keys.term_of(key)?;
        Some(parse_term_file(term, value))
    }

    async fn observe(&self) -> Result<LeaseSnapshot, LeaseError> {
        let deadline = self.deadline();
        let from = self.highest_known.load(Ordering::Relaxed).max(1);
        let keys = self.keys.clone();
        // One linearizable read-only transaction: the terms from the highest one we know (a few
        // keys; terms only grow) and the pause flag, at one revision.
        let txn = Txn::new().and_then([
            TxnOp::get(
                keys.term(from),
                Some(GetOptions::new().with_range(keys.terms_end.clone())),
            ),
            TxnOp::get(keys.paused.clone(), None),
        ]);
        let resp = self
            .call(deadline, |mut c| {
                let txn = txn.clone();
                async move { c.txn(txn).await }
            })
            .await?;
        let mut newest = None;
        let mut paused = false;
        for (k, op) in resp.op_responses().into_iter().enumerate() {
            if let TxnOpResponse::Get(get) = op {
                if k == 0 {
                    newest = get
                        .kvs()
                        .last()
                        .and_then(|kv| self.parse(kv.key(), kv.value()));
                } else {
                    paused = !get.kvs().is_empty();
                }
            }
        }
        if newest.is_none() && from > 1 {
            // The terms we knew are gone (pruned or wiped by hand): look at what is there.
            newest = self.history_from(deadline, 1).await?.into_iter().next();
        }
        if let Some(f) = &newest {
            self.highest_known.fetch_max(f.term(), Ordering::Relaxed);
        }
        Ok(LeaseSnapshot { newest, paused })
    }

    /// Terms newest first, at most `limit`.
    async fn history_from(
        &self,
        deadline: Instant,
        limit: i64,
    ) -> Result<Vec<TermFile>, LeaseError> {
        let keys = self.keys.clone();
        let resp = self
            .call(deadline, |mut c| {
                let options = GetOptions::new()
                    .with_range(keys.terms_end.clone())
                    .with_sort(SortTarget::Key, SortOrder::Descend)
                    .with_limit(limit);
                let key = keys.term(0);
                async move { c.get(key, Some(options)).await }
            })
            .await?;
        Ok(resp
            .kvs()
            .iter()
            .filter_map(|kv| self.parse(kv.key(), kv.value()))
            .collect())
    }

    async fn read(&self, term: u64) -> Result<Option<TermFile>, LeaseError> {
        let key = self.keys.term(term);
        let resp = self
            .call(self.deadline(), |mut c| {
                let key = key.clone();
                async move { c.get(key, None).await }
            })
            .await?;
        Ok(resp
            .kvs()
            .first()
            .map(|kv| parse_term_file(term, kv.value())))
    }

    async fn claim(&self, record: TermRecord) -> Result<bool, LeaseError> {
        let deadline = self.deadline();
        let term = record.term;
        if term == 0 {
            return Err(etcd_err("term 0 cannot be claimed (terms start at 1)"));
        }
        let value = serde_json::to_vec(&record).map_err(|e| etcd_err(format!("encode: {e}")))?;
        let keys = self.keys.clone();

        // 1. What holds the leader key now, and so what the claim may replace.
        let leader = self
            .call(deadline, |mut c| {
                let key = keys.leader.clone();
                async move { c.get(key, None).await }
            })
            .await?;
        let guard = match leader.kvs().first() {
            None => Compare::create_revision(keys.leader.clone(), CompareOp::Equal, 0),
            Some(kv) => {
                // Our own key, from this process: the core claims only once it holds no term,
                // so it no longer acts on that one (a holder that fenced itself while etcd had
                // no quorum, whose etcd lease the new raft leader renewed).
                let own = lock(&self.held).is_some_and(|h| h.lease == kv.lease());
                let replaceable = kv.lease() == 0
                    || own
                    || match serde_json::from_slice::<TermRecord>(kv.value()) {
                        Ok(r) => {
                            r.term + 1 == term
                                && (r.released || r.handover_to.as_deref() == Some(&record.node))
                        }
                        Err(_) => false,
                    };
                if !replaceable {
                    // Its holder keeps it alive: wait until it is released or expires.
                    return Ok(false);
                }
                Compare::mod_revision(keys.leader.clone(), CompareOp::Equal, kv.mod_revision())
            }
        };

        // 2. The etcd lease that keeps the new leader key alive.
        let granted = self
            .call(deadline, |mut c| {
                let ttl = self.ttl;
                async move { c.lease_grant(ttl, None).await }
            })
            .await?;
        let lease = granted.id();

        // 3. One transaction: no term >= this one exists, and the leader key is what we read.
        let mut ops = vec![
            TxnOp::put(
                keys.leader.clone(),
                value.clone(),
                Some(PutOptions::new().with_lease(lease)),
            ),
            TxnOp::put(keys.term(term), value, None),
        ];
        if term > HISTORY_KEEP {
            ops.push(TxnOp::delete(
                keys.term(0),
                Some(DeleteOptions::new().with_range(keys.term(term - HISTORY_KEEP + 1))),
            ));
        }
        let txn = Txn::new()
            .when([
                guard,
                Compare::create_revision(keys.term(term), CompareOp::Equal, 0)
                    .with_range(keys.terms_end.clone()),
            ])
            .and_then(ops)
            .or_else([TxnOp::get(keys.leader.clone(), None)]);
        let outcome = self
            .call(deadline, |mut c| {
                let txn = txn.clone();
                async move { c.txn(txn).await }
            })
            .await;
        let won = match &outcome {
            Ok(resp) if resp.succeeded() => true,
            // A first attempt that timed out may have committed before a second one ran: the
            // leader key on our new etcd lease (granted to this call alone) says so.
            Ok(resp) => resp.op_responses().iter().any(|op| {
                matches!(op, TxnOpResponse::Get(g) if g.kvs().first().is_some_and(|kv| kv.lease() == lease))
            }),
            Err(_) => false,
        };
        if won {
            *lock(&self.held) = Some(Held { term, lease });
            self.highest_known.fetch_max(term, Ordering::Relaxed);
            return Ok(true);
        }
        // Lost (or unknown): revoke the lease, so that if an attempt still lands it holds nothing
        // for long. Best effort, within what is left of the budget.
        let _ = self
            .call(deadline, |mut c| async move { c.lease_revoke(lease).await })
            .await;
        outcome.map(|_| false)
    }

    async fn write(&self, record: TermRecord) -> Result<(), LeaseError> {
        let deadline = self.deadline();
        let term = record.term;
        let held = lock(&self.held).filter(|h| h.term == term).ok_or_else(|| {
            etcd_err(format!(
                "cannot write term {term}: this node does not hold it"
            ))
        })?;
        let value = serde_json::to_vec(&record).map_err(|e| etcd_err(format!("encode: {e}")))?;
        let keys = self.keys.clone();

        // Keep the etcd lease alive first: if it has expired, the key is gone and so is the term.
        self.call(deadline, |mut c| async move {
            c.lease_keep_alive(held.lease).await.map(|_| ())
        })
        .await
        .map_err(|e| match e {
            LeaseError::Etcd(why) if why.ends_with("lease not found") => {
                etcd_err(format!("{why}: the etcd lease of term {term} has expired"))
            }
            other => other,
        })?;

        let txn = Txn::new()
            .when([Compare::lease(
                keys.leader.clone(),
                CompareOp::Equal,
                held.lease,
            )])
            .and_then([
                TxnOp::put(
                    keys.leader.clone(),
                    value.clone(),
                    Some(PutOptions::new().with_lease(held.lease)),
                ),
                TxnOp::put(keys.term(term), value, None),
            ])
            .or_else([TxnOp::get(keys.leader.clone(), None)]);
        let resp = self
            .call(deadline, |mut c| {
                let txn = txn.clone();
                async move { c.txn(txn).await }
            })
            .await?;
        if !resp.succeeded() {
            let now = resp
                .op_responses()
                .into_iter()
                .find_map(|op| match op {
                    TxnOpResponse::Get(g) => Some(match g.kvs().first() {
                        None => "the leader key is gone (its etcd lease expired)".to_string(),
                        Some(kv) => match serde_json::from_slice::<TermRecord>(kv.value()) {
                            Ok(r) => format!("{} holds term {} now", r.node, r.term),
                            Err(_) => "the leader key holds something else".to_string(),
                        },
                    }),
                    _ => None,
                })
                .unwrap_or_default();
            *lock(&self.held) = None;
            return Err(etcd_err(format!(
                "term {term} is no longer this node's: {now}"
            )));
        }
        if record.released {
            *lock(&self.held) = None;
        }
        Ok(())
    }

    async fn set_paused(&self, paused: bool, by: String) -> Result<(), LeaseError> {
        let key = self.keys.paused.clone();
        let value = format!("paused by {by} at {}", unix_ms());
        self.call(self.deadline(), |mut c| {
            let key = key.clone();
            let value = value.clone();
            async move {
                if paused {
                    c.put(key, value, None).await.map(|_| ())
                } else {
                    c.delete(key, None).await.map(|_| ())
                }
            }
        })
        .await
    }

    /// Watches the leader key and wakes the loop on every change made by another node (a
    /// renewal, a release, a new term) and on its deletion (expiry). Reconnects to another member
    /// when the stream ends or a member stays silent (stopped, cut off, lost its leader).
    async fn watch(self: Arc<Self>, wake: Arc<Notify>) {
        let n = self.endpoints.len();
        let mut first = true;
        loop {
            let i = self.preferred.load(Ordering::Relaxed) % n;
            let key = self.keys.leader.clone();
            let patience = self.budget.max(Duration::from_secs(1));
            let opened = tokio::time::timeout(patience, async {
                let mut client = self.client(i).await?;
                let stream = client.watch(key.clone(), None).await.map_err(failure)?;
                Ok::<_, Failure>((client, stream))
            })
            .await;
            if let Ok(Ok((mut client, mut stream))) = opened {
                if !first {
                    // Changes may have been missed while reconnecting.
                    wake.notify_one();
                }
                first = false;
                let mut probe = tokio::time::interval(Duration::from_secs(1));
                probe.tick().await;
                loop {
                    tokio::select! {
                        message = stream.message() => match message {
                            Ok(Some(resp)) => {
                                if resp.canceled() {
                                    break;
                                }
                                let own = lock(&self.held).map(|h| h.lease);
                                let others = resp.events().iter().any(|ev| {
                                    ev.event_type() == EventType::Delete
                                        || ev.kv().is_none_or(|kv| Some(kv.lease()) != own)
                                });
                                if others {
                                    wake.notify_one();
                                }
                            }
                            _ => break,
                        },
                        _ = probe.tick() => {
                            // A stopped or cut-off member keeps a watch open and silent, which
                            // would never wake anyone: read through the same connection every
                            // second (linearizable, so a member without a leader fails it too).
                            let read = tokio::time::timeout(patience, client.get(key.clone(), None)).await;
                            if !matches!(read, Ok(Ok(_))) {
                                break;
                            }
                        }
                    }
                }
            }
            self.preferred.store((i + 1) % n, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Lease for EtcdLease {
    fn observe(&self) -> Result<LeaseSnapshot, LeaseError> {
        self.block(|inner| async move { inner.observe().await })
    }

    fn read(&self, term: u64) -> Result<Option<TermFile>, LeaseError> {
        self.block(move |inner| async move { inner.read(term).await })
    }

    fn claim(&self, record: &TermRecord) -> Result<bool, LeaseError> {
        let record = record.clone();
        self.block(|inner| async move { inner.claim(record).await })
    }

    fn write(&self, record: &TermRecord) -> Result<(), LeaseError> {
        let record = record.clone();
        self.block(|inner| async move { inner.write(record).await })
    }

    fn history(&self, limit: usize) -> Result<Vec<TermFile>, LeaseError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.block(move |inner| async move {
            let deadline = inner.deadline();
            inner.history_from(deadline, limit).await
        })
    }

    fn set_paused(&self, paused: bool, by: &str) -> Result<(), LeaseError> {
        let by = by.to_string();
        self.block(move |inner| async move { inner.set_paused(paused, by).await })
    }

    fn subscribe(&self, wake: Arc<Notify>) {
        if let Some(runtime) = &self.runtime {
            runtime.spawn(self.inner.clone().watch(wake));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn term_keys_sort_as_numbers_and_parse_back() {
        let k = Keys::new("/jenkins-ha/ci");
        assert_eq!(k.term(7), "/jenkins-ha/ci/terms/00000000000000000007");
        assert!(k.term(9) < k.term(10) && k.term(10) < k.term(u64::MAX));
        assert!(k.term(u64::MAX) < k.terms_end);
        assert_eq!(k.term_of(k.term(123).as_bytes()), Some(123));
        assert_eq!(k.term_of(b"/jenkins-ha/ci/leader"), None);
        assert_eq!(k.term_of(b"/jenkins-ha/cix/terms/1"), None);
    }

    #[test]
    fn the_ttl_is_the_lease_timeout_rounded_up_to_seconds() {
        assert_eq!(ttl_for(Duration::from_secs(5)), 5);
        assert_eq!(ttl_for(Duration::from_millis(5001)), 6);
        assert_eq!(ttl_for(Duration::from_millis(2500)), 3);
        assert_eq!(ttl_for(Duration::from_millis(30)), 1);
    }
}
