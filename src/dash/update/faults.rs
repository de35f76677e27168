//! `update` for rehearsals: injected faults (`capwatch --chaos`) — the fault menu's keys, and
//! the answers of the server's `/chaos` routes turned into fault start and end records, log
//! lines and the banner's state — and the traffic the demo sends (a log line each). Pure, like
//! `update`.

use super::Effects;
use crate::dash::effect::Effect;
use crate::dash::event::{FaultsEvent, Input, TrafficEvent};
use crate::dash::record::{FaultEnd, FaultPhase, FaultRecord, Record};
use crate::dash::rehearsal::describe;
use crate::dash::state::FaultSummary;
use crate::dash::state::LogLevel;
use crate::dash::state::{DashState, TrackedFault};
use crate::protocol::faults::ActiveFault;

/// The fault menu's keys: `f` opens and closes it, a number injects that entry, `x` clears.
pub(super) fn on_fault_input(state: &mut DashState, input: Input, out: &mut Effects) {
    let url = state.url.clone().filter(|_| state.lifecycle.is_ready());
    match input {
        Input::FaultMenu if !state.settings.chaos => {
            out.notice(state, "fault injection is off: start the dashboard with --chaos");
        }
        Input::FaultMenu => state.view.fault_menu = !state.view.fault_menu,
        Input::Choose(number) if state.view.fault_menu => {
            let Some(spec) = state.settings.fault_menu.get(number.wrapping_sub(1)).cloned() else { return };
            state.view.fault_menu = false;
            let Some(url) = url else {
                out.notice(state, "no server is up to take the fault");
                return;
            };
            out.notice(state, &format!("injecting {}…", spec.kind.name()));
            out.log(
                state,
                LogLevel::Warn,
                format!("⚡ Injecting a fault: {} for {:.0} s", describe(&spec), spec.duration_s),
            );
            out.effects.push(Effect::InjectFault { url, spec });
        }
        Input::ClearFaults if state.view.fault_menu => {
            state.view.fault_menu = false;
            let Some(url) = url else { return };
            state.faults.clearing = true;
            out.notice(state, "clearing every fault…");
            out.effects.push(Effect::ClearFaults { url });
        }
        _ => {}
    }
}

/// What came of the scenes and the drift reference the session asked the server for.
pub(super) fn on_traffic(state: &mut DashState, event: TrafficEvent, out: &mut Effects) {
    let (level, message) = match event {
        TrafficEvent::Sent(Ok(sent)) => (
            if sent.failed == 0 { LogLevel::Info } else { LogLevel::Warn },
            format!(
                "🚦 {} {} scenes sent: {} answered, {} failed",
                sent.sent,
                sent.shift.name(),
                sent.answered,
                sent.failed
            ),
        ),
        TrafficEvent::Sent(Err(why)) => (LogLevel::Error, format!("🚦 Scenes not sent: {why}")),
        TrafficEvent::ReferenceFrozen(Ok(reference)) => (LogLevel::Info, format!("📌 {reference}")),
        TrafficEvent::ReferenceFrozen(Err(why)) => (LogLevel::Error, format!("📌 {why}")),
    };
    out.log(state, level, message);
}

pub(super) fn on_faults(state: &mut DashState, event: FaultsEvent, out: &mut Effects) {
    match event {
        FaultsEvent::Injected { result: Ok(fault), .. } => {
            state.faults.changed_at = Some(out.clock.now);
            started(state, fault, out);
        }
        FaultsEvent::Injected { kind, result: Err(why) } => {
            out.notice(state, &format!("the {} fault was not injected", kind.name()));
            out.log(state, LogLevel::Error, format!("⚡ Fault {} not injected: {why}", kind.name()));
        }
        // Sent before the latest inject or clear was answered: it may not show that change.
        FaultsEvent::Listed { requested_at, .. }
            if state.faults.changed_at.is_some_and(|changed_at| requested_at < changed_at) => {}
        FaultsEvent::Listed { result: Ok(faults), .. } => {
            let gone: Vec<u64> = state
                .faults
                .active
                .iter()
                .map(|tracked| tracked.fault.id)
                .filter(|id| !faults.iter().any(|fault| fault.id == *id))
                .collect();
            let how = if state.faults.clearing { FaultEnd::Cleared } else { FaultEnd::Expired };
            for id in gone {
                ended(state, id, how, out);
            }
            state.faults.clearing = false;
            for fault in faults {
                match state.faults.active.iter_mut().find(|tracked| tracked.fault.id == fault.id) {
                    Some(tracked) => {
                        tracked.fault = fault;
                        tracked.seen = out.clock.now;
                    }
                    None => started(state, fault, out),
                }
            }
        }
        // The server is down or busy restarting: its exit ends the faults (see `server_exited`).
        FaultsEvent::Listed { result: Err(_), .. } => {}
        FaultsEvent::Cleared(Ok(cleared)) => {
            state.faults.changed_at = Some(out.clock.now);
            out.log(state, LogLevel::Info, format!("⚡ Faults cleared ({} in force)", cleared.len()));
            for fault in &cleared {
                if let Some(tracked) = state.faults.active.iter_mut().find(|tracked| tracked.fault.id == fault.id) {
                    tracked.fault.hits = fault.hits;
                }
            }
            let ids: Vec<u64> = state.faults.active.iter().map(|tracked| tracked.fault.id).collect();
            for id in ids {
                ended(state, id, FaultEnd::Cleared, out);
            }
            state.faults.clearing = false;
        }
        FaultsEvent::Cleared(Err(why)) => {
            state.faults.clearing = false;
            out.log(state, LogLevel::Error, format!("⚡ Faults not cleared: {why}"));
        }
    }
}

/// The server process ended: its faults ended with it.
pub(super) fn server_exited(state: &mut DashState, out: &mut Effects) {
    let ids: Vec<u64> = state.faults.active.iter().map(|tracked| tracked.fault.id).collect();
    for id in ids {
        ended(state, id, FaultEnd::ServerExited, out);
    }
}

fn started(state: &mut DashState, fault: ActiveFault, out: &mut Effects) {
    if state.faults.active.iter().any(|tracked| tracked.fault.id == fault.id) {
        return;
    }
    let message =
        format!("⚡ Fault {} started: {} for {:.0} s", fault.id, describe(&fault.spec), fault.spec.duration_s);
    out.log(state, LogLevel::Warn, message);
    out.write(Record::Fault(FaultRecord {
        stamp: out.stamp(state),
        event: FaultPhase::Started,
        fault_id: fault.id,
        fault: fault.spec.clone(),
        hits: None,
        active_s: None,
        ended_by: None,
    }));
    let now = out.clock.now;
    state.faults.active.push(TrackedFault { fault, started: now, seen: now });
}

fn ended(state: &mut DashState, id: u64, how: FaultEnd, out: &mut Effects) {
    let Some(index) = state.faults.active.iter().position(|tracked| tracked.fault.id == id) else { return };
    let tracked = state.faults.active.remove(index);
    let active_s = out.clock.now.saturating_duration_since(tracked.started).as_secs_f64();
    let stamp = out.stamp(state);
    let message = format!(
        "⚡ Fault {id} ended ({}): {} after {active_s:.1} s, {} requests hit",
        how.label(),
        describe(&tracked.fault.spec),
        tracked.fault.hits
    );
    out.log(state, LogLevel::Info, message);
    state.faults.ended.push(FaultSummary {
        kind: tracked.fault.spec.kind.name().to_owned(),
        fault: describe(&tracked.fault.spec),
        started_s: (stamp.uptime_s - active_s).max(0.0),
        active_s,
        hits: tracked.fault.hits,
        ended_by: how.label().to_owned(),
    });
    out.write(Record::Fault(FaultRecord {
        stamp,
        event: FaultPhase::Ended,
        fault_id: id,
        fault: tracked.fault.spec,
        hits: Some(tracked.fault.hits),
        active_s: Some(active_s),
        ended_by: Some(how),
    }));
}
