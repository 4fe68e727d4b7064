//! The share bookkeeping and the end of a recovery, without Redis.

use super::*;

fn keys() -> [String; 2] {
    ["p:host:cdn".to_owned(), "p:addr:10.0.0.1".to_owned()]
}

#[test]
fn a_share_caps_every_slot_held_here_whatever_gave_it() {
    let mut state = State::default();
    let k = keys();
    // Two slots the fleet gave (no cap), then the share of 2 is already used up.
    assert!(state.take(&k, None));
    assert!(state.take(&k, None));
    assert!(!state.take(&k, Some([2, 8])));
    state.give_back(&k);
    assert!(state.take(&k, Some([2, 8])));
    // The address's share binds as well as the host's.
    let other_host = ["p:host:www".to_owned(), k[1].clone()];
    assert!(state.take(&other_host, Some([2, 3])));
    assert!(
        !state.take(&other_host, Some([2, 3])),
        "4 held at the address"
    );
    for _ in 0..3 {
        state.give_back(&k);
    }
    state.give_back(&other_host);
    assert!(state.held.is_empty(), "nothing held is nothing kept");
}

#[tokio::test]
async fn a_recovery_ends_on_time() {
    let mut state = State {
        mode: Mode::Recovering {
            until: Instant::now() + Duration::from_millis(50),
        },
        ..State::default()
    };
    state.settle(Instant::now());
    assert!(matches!(state.mode, Mode::Recovering { .. }));
    state.settle(Instant::now() + Duration::from_millis(60));
    assert!(matches!(state.mode, Mode::Fleet));
}
