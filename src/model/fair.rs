//! Fair shares of a worker process's free slots: which jobs a claim takes rows from, and how
//! many from each.
//!
//! The rule is weighted max-min over what the process already holds. Each free slot, one at a
//! time, goes to the client with the lowest `held / weight` (a client's weight is the weight of
//! its highest-priority active job, see [`Priority::weight`]), and within that client to its
//! job with the lowest `held / weight`; ties go to the older job (and to the client whose
//! oldest job is older). A job never holds more than the per-job cap ([`per_job_cap`]), so the
//! slots a big job cannot take stay free for whoever comes next. Because shares are measured
//! on holdings rather than on turns, a client that arrives with one small job holds nothing,
//! so every slot that frees goes to it until it holds its share: it does not wait for a turn
//! behind whatever else is queued.
//!
//! Pure: the store runs the plan, the worker pool says what it holds.

use super::Priority;
use std::collections::HashMap;
use uuid::Uuid;

/// A job with work left, as a claim sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ActiveJob {
    /// The job.
    pub id: Uuid,
    /// Its client (the client row's id): shares are first split between clients.
    pub client: Uuid,
    /// Its weight within its client, and its client's weight if it is the client's highest.
    pub priority: Priority,
    /// Whether it has a row to claim now. A job whose rows are all in flight or waiting for
    /// a retry still counts for its client's holdings and weight, but gets no slot: asking
    /// it for rows would only cost a statement.
    pub due: bool,
}

/// What a process may claim now and what it already holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Share {
    /// Slots free in the process: the most rows this claim may take.
    pub free: usize,
    /// The most rows one job may hold in the process ([`per_job_cap`]).
    pub per_job: usize,
    /// Rows the process holds in flight, per job.
    pub held: HashMap<Uuid, usize>,
}

/// The most of a process's `concurrency` slots one job may hold: `share` of them rounded
/// down, and at least one so every job can make progress.
pub fn per_job_cap(concurrency: usize, share: f64) -> usize {
    ((concurrency as f64 * share).floor() as usize).max(1)
}

/// One client's standing while slots are handed out.
struct Client {
    /// The weight of its highest-priority active job.
    weight: u64,
    /// Rows it holds, counting the ones planned so far.
    held: u64,
    /// Its jobs, as indexes into the active list (oldest first).
    jobs: Vec<usize>,
}

/// `a_held / a_weight < b_held / b_weight`, without division.
fn lighter(a_held: u64, a_weight: u64, b_held: u64, b_weight: u64) -> bool {
    a_held * b_weight < b_held * a_weight
}

/// How many rows to claim from each job (oldest first, jobs with none left out) so that
/// `share.free` slots are split by weighted max-min over holdings, no job above
/// `share.per_job`. `jobs` is oldest first. Fewer than `free` rows are planned only when every
/// job is at its cap.
pub fn plan(share: &Share, jobs: &[ActiveJob]) -> Vec<(Uuid, usize)> {
    let mut held: Vec<u64> = jobs
        .iter()
        .map(|job| share.held.get(&job.id).copied().unwrap_or(0) as u64)
        .collect();
    let mut planned = vec![0usize; jobs.len()];
    let mut clients: Vec<Client> = Vec::new();
    let mut client_of: HashMap<Uuid, usize> = HashMap::new();
    for (i, job) in jobs.iter().enumerate() {
        let at = *client_of.entry(job.client).or_insert_with(|| {
            clients.push(Client {
                weight: 0,
                held: 0,
                jobs: Vec::new(),
            });
            clients.len() - 1
        });
        let client = &mut clients[at];
        client.weight = client.weight.max(u64::from(job.priority.weight()));
        client.held += held[i];
        client.jobs.push(i);
    }
    let cap = share.per_job as u64;
    for _ in 0..share.free {
        let open = |i: &usize| jobs[*i].due && held[*i] < cap;
        // Clients are in the order of their oldest job, so the first lightest is the older.
        let mut best: Option<(usize, usize)> = None;
        for (c, client) in clients.iter().enumerate() {
            let Some(job) = lightest_job(&client.jobs, jobs, &held, open) else {
                continue;
            };
            let better = best.is_none_or(|(b, _)| {
                lighter(
                    client.held,
                    client.weight,
                    clients[b].held,
                    clients[b].weight,
                )
            });
            if better {
                best = Some((c, job));
            }
        }
        let Some((c, job)) = best else { break };
        held[job] += 1;
        clients[c].held += 1;
        planned[job] += 1;
    }
    jobs.iter()
        .zip(planned)
        .filter(|(_, n)| *n > 0)
        .map(|(job, n)| (job.id, n))
        .collect()
}

/// The open job of `mine` with the lowest `held / weight`, the older on a tie.
fn lightest_job(
    mine: &[usize],
    jobs: &[ActiveJob],
    held: &[u64],
    open: impl Fn(&usize) -> bool,
) -> Option<usize> {
    let weight = |i: usize| u64::from(jobs[i].priority.weight());
    mine.iter().copied().filter(|i| open(i)).reduce(|best, i| {
        if lighter(held[i], weight(i), held[best], weight(best)) {
            i
        } else {
            best
        }
    })
}

#[cfg(test)]
mod tests;
