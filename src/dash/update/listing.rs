//! `update` for an instance discovery lists: its new alerts are held until a lookup that began
//! after it started failing lists it again (then they go out, or are dropped if they
//! recovered meanwhile); a run of failures asks discovery to look again; leaving the fleet
//! resolves every alert as `left`. Pure, like `update`.

use super::*;

/// Discovery listed this instance in a lookup that began at `at`: alerts held for want of
/// that confirmation go out now. A held alert that resolved meanwhile was a blip: dropped.
pub(super) fn on_listed(state: &mut DashState, at: tokio::time::Instant, out: &mut Effects) {
    let Some(listing) = &mut state.listing else { return };
    listing.listed_at = Some(listing.listed_at.map_or(at, |listed_at| listed_at.max(at)));
    if listing.held.is_empty() || !listing.confirms(state.failing_since) {
        return;
    }
    let held = std::mem::take(&mut listing.held);
    for alert in held.iter().filter(|alert| !resolved_while_held(&held, alert.rule)) {
        raise_now(state, alert.clone(), out);
    }
    let dropped: Vec<&AlertEvent> = held.iter().filter(|a| resolved_while_held(&held, a.rule)).collect();
    if !dropped.is_empty() {
        let message =
            format!("⏳ Not raised: {} recovered before discovery confirmed the instance", rule_names(&dropped));
        out.log(state, LogLevel::Info, message);
    }
}

/// The rules of these alerts, each once, in order: `health_down, error_rate`.
fn rule_names(alerts: &[&AlertEvent]) -> String {
    let mut names: Vec<&str> = Vec::new();
    for alert in alerts {
        if !names.contains(&alert.rule.name()) {
            names.push(alert.rule.name());
        }
    }
    names.join(", ")
}

/// Whether the last held event of `rule` ends its alert.
fn resolved_while_held(held: &[AlertEvent], rule: RuleKind) -> bool {
    held.iter().rev().find(|alert| alert.rule == rule).is_some_and(|alert| alert.transition.is_resolve())
}

/// Discovery no longer lists this instance: every alert it raised resolves as `left` (those
/// it held were never raised and are dropped), and it stops counting, like a quitting
/// instance; its end record comes with everyone's at the end of the session.
pub(super) fn on_left(state: &mut DashState, out: &mut Effects) {
    let held = match &mut state.listing {
        Some(listing) => {
            listing.left = true;
            std::mem::take(&mut listing.held)
        }
        None => Vec::new(),
    };
    for alert in state.alerts.retire() {
        if !held.iter().any(|h| h.rule == alert.rule) {
            raise_now(state, alert, out);
        }
    }
    if !held.is_empty() {
        let held: Vec<&AlertEvent> = held.iter().collect();
        let message = format!("⏳ Not raised: {} (the instance left the fleet)", rule_names(&held));
        out.log(state, LogLevel::Info, message);
    }
    if state.phase == Phase::Running {
        state.phase = Phase::Draining { status_at_quit: state.status() };
    }
}

/// Notes when a run of failures begins and ends. A discovered instance that starts failing
/// asks discovery to look again: has it been removed, or is it failing while listed?
pub(super) fn track_failing(state: &mut DashState, out: &mut Effects) {
    let failing = state.consecutive_health_failures > 0 || state.consecutive_failures > 0;
    match (failing, state.failing_since) {
        (true, None) => {
            state.failing_since = Some(out.clock.now);
            if state.listing.is_some() {
                out.effects.push(Effect::Rediscover);
            }
        }
        (false, Some(_)) => state.failing_since = None,
        _ => {}
    }
}
