//! The plan without a database: shares between clients, within a client, the cap, priorities.

use super::*;

fn job(id: u128, client: u128, priority: Priority) -> ActiveJob {
    ActiveJob {
        id: Uuid::from_u128(id),
        client: Uuid::from_u128(client),
        priority,
        due: true,
    }
}

fn share(free: usize, per_job: usize, held: &[(u128, usize)]) -> Share {
    Share {
        free,
        per_job,
        held: held
            .iter()
            .map(|(id, n)| (Uuid::from_u128(*id), *n))
            .collect(),
    }
}

/// The plan as (job number, rows).
fn planned(share: &Share, jobs: &[ActiveJob]) -> Vec<(u128, usize)> {
    plan(share, jobs)
        .into_iter()
        .map(|(id, n)| (id.as_u128(), n))
        .collect()
}

#[test]
fn the_cap_is_a_share_of_the_slots_rounded_down_and_at_least_one() {
    assert_eq!(per_job_cap(64, 1.0), 64);
    assert_eq!(per_job_cap(64, 0.75), 48);
    assert_eq!(per_job_cap(64, 0.5), 32);
    assert_eq!(per_job_cap(10, 0.55), 5);
    assert_eq!(per_job_cap(1, 0.5), 1);
    assert_eq!(per_job_cap(3, 0.01), 1);
}

#[test]
fn a_lone_job_takes_every_free_slot_up_to_its_cap() {
    let jobs = [job(1, 10, Priority::Normal)];
    assert_eq!(planned(&share(64, 64, &[]), &jobs), [(1, 64)]);
    assert_eq!(planned(&share(64, 48, &[]), &jobs), [(1, 48)]);
    // It already holds 40 of its 48: only 8 more, whatever is free.
    assert_eq!(planned(&share(24, 48, &[(1, 40)]), &jobs), [(1, 8)]);
    assert_eq!(planned(&share(24, 48, &[(1, 48)]), &jobs), []);
    assert_eq!(planned(&share(0, 48, &[]), &jobs), []);
    assert_eq!(planned(&share(8, 48, &[]), &[]), []);
}

#[test]
fn a_new_client_gets_every_freed_slot_until_it_holds_its_share() {
    // Alpha's big job holds 60 of 64 slots; beta's small job arrives. Every slot that frees
    // goes to beta, however many rows alpha has queued.
    let jobs = [job(1, 10, Priority::Normal), job(2, 20, Priority::Normal)];
    assert_eq!(planned(&share(4, 64, &[(1, 60)]), &jobs), [(2, 4)]);
    // On an idle process the two split the slots evenly.
    assert_eq!(planned(&share(64, 64, &[]), &jobs), [(1, 32), (2, 32)]);
    // Once beta holds as much as alpha, they alternate again.
    assert_eq!(
        planned(&share(10, 64, &[(1, 27), (2, 27)]), &jobs),
        [(1, 5), (2, 5)]
    );
}

#[test]
fn slots_are_shared_between_clients_first_then_between_a_clients_jobs() {
    // Alpha has three jobs, beta one: beta gets half, alpha's half is split three ways.
    let jobs = [
        job(1, 10, Priority::Normal),
        job(2, 10, Priority::Normal),
        job(3, 10, Priority::Normal),
        job(4, 20, Priority::Normal),
    ];
    let plan = planned(&share(60, 64, &[]), &jobs);
    assert_eq!(plan, [(1, 10), (2, 10), (3, 10), (4, 30)]);
}

#[test]
fn ties_go_to_the_older_job() {
    let jobs = [
        job(1, 10, Priority::Normal),
        job(2, 20, Priority::Normal),
        job(3, 20, Priority::Normal),
    ];
    // One slot: the two clients hold the same, so the client of the older job wins it.
    assert_eq!(planned(&share(1, 64, &[]), &jobs), [(1, 1)]);
    // Three slots: one each to the clients, then beta's older job before its newer one.
    assert_eq!(planned(&share(3, 64, &[]), &jobs), [(1, 2), (2, 1)]);
    assert_eq!(planned(&share(4, 64, &[]), &jobs), [(1, 2), (2, 1), (3, 1)]);
}

#[test]
fn a_high_job_gets_twice_the_slots_of_a_normal_one_of_another_client() {
    let jobs = [job(1, 10, Priority::Normal), job(2, 20, Priority::High)];
    assert_eq!(planned(&share(60, 64, &[]), &jobs), [(1, 20), (2, 40)]);
    // Low gets half of normal.
    let jobs = [job(1, 10, Priority::Low), job(2, 20, Priority::Normal)];
    assert_eq!(planned(&share(60, 64, &[]), &jobs), [(1, 20), (2, 40)]);
}

#[test]
fn a_clients_weight_is_its_highest_priority_and_its_jobs_split_by_their_own() {
    // Alpha runs a high and a low job: alpha weighs 4 against beta's 2, and inside alpha the
    // high job gets four times the low one's share.
    let jobs = [
        job(1, 10, Priority::High),
        job(2, 10, Priority::Low),
        job(3, 20, Priority::Normal),
    ];
    assert_eq!(
        planned(&share(60, 64, &[]), &jobs),
        [(1, 32), (2, 8), (3, 20)]
    );
}

#[test]
fn a_capped_job_leaves_its_slots_to_the_others_and_to_no_one_when_alone() {
    let jobs = [job(1, 10, Priority::High), job(2, 20, Priority::Normal)];
    // The high job would get 40 of 60, but may hold 16: beta takes the rest up to its own cap.
    assert_eq!(planned(&share(60, 16, &[]), &jobs), [(1, 16), (2, 16)]);
    assert_eq!(planned(&share(60, 40, &[]), &jobs), [(1, 40), (2, 20)]);
}

#[test]
fn a_job_with_nothing_due_gets_no_slot_but_its_holdings_count_for_its_client() {
    // Alpha's first job is all in flight (nothing due), its second has work; beta has one.
    let mut waiting = job(1, 10, Priority::Normal);
    waiting.due = false;
    let jobs = [
        waiting,
        job(2, 10, Priority::Normal),
        job(3, 20, Priority::Normal),
    ];
    // Alpha holds 20 through its waiting job, so beta gets the freed slots first.
    assert_eq!(
        planned(&share(24, 64, &[(1, 20)]), &jobs),
        [(2, 2), (3, 22)]
    );
    // Nothing due anywhere: nothing planned.
    let mut idle = job(1, 10, Priority::Normal);
    idle.due = false;
    assert_eq!(planned(&share(8, 64, &[]), &[idle]), []);
}

#[test]
fn holdings_of_jobs_no_longer_active_are_ignored() {
    let jobs = [job(1, 10, Priority::Normal)];
    assert_eq!(planned(&share(4, 64, &[(9, 60)]), &jobs), [(1, 4)]);
}
