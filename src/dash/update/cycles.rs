//! `update` for the inference probes and the test cycles they make up: each probe's
//! figures, the end of a cycle (its record, the A/B comparison, the judged rules), a service
//! that answers in the wrong shape. Pure, like `update`.

use super::*;

pub(super) fn on_probe(state: &mut DashState, probe: InferenceProbe, out: &mut Effects) {
    let latency_ms = probe.latency.as_secs_f64() * 1000.0;
    let (success, model_time, quality) = match &probe.result {
        Ok(result) => (true, result.model_time, Some(result.quality.score())),
        Err(_) => (false, None, None),
    };
    let sample = ProbeSample { at: probe.at, latency: probe.latency, model_time, success, quality };
    state.window.prune(out.clock.now);
    state.window.record(sample);
    state.session.record(&sample);
    state.tests += 1;
    // With variants, one test is one image sent to each of them: count it at its first answer.
    let first_of_round =
        probe.variant.as_ref().is_none_or(|tag| state.ab.as_ref().is_none_or(|ab| !ab.has_answer_in(tag)));
    if first_of_round {
        state.test_in_cycle += 1;
    }
    if let (Some(tag), Some(ab)) = (&probe.variant, &mut state.ab) {
        ab.record(tag, &probe);
    }
    state.consecutive_failures = if success { 0 } else { state.consecutive_failures + 1 };
    track_failing(state, out);
    // One model's service times only: with variants, each test goes to several models.
    if probe.variant.is_none()
        && let Ok(result) = &probe.result
        && let Some(total) = result.server_total
    {
        let queued = result.server_queue.unwrap_or_default();
        state.cycle_service_ms.push(total.saturating_sub(queued).as_secs_f64() * 1000.0);
    }
    let model_ms = model_time.map(|d| d.as_secs_f64() * 1000.0);
    push_bounded(&mut state.recent, RECENT_PROBES, RecentProbe { latency_ms, model_ms });
    let outcome = match &probe.result {
        Ok(_) => "success",
        Err(error) => error.kind(),
    };
    out.metric(MetricUpdate::Probe { probe: ProbeKind::Caption, outcome, latency: probe.latency });
    if let Some(tag) = &probe.variant {
        out.metric(MetricUpdate::VariantProbe { model: tag.name.clone(), outcome, latency: probe.latency, quality });
    }
    if let Some(quality) = quality {
        out.metric(MetricUpdate::CaptionQuality(quality));
    }
    let mut position = format!("Test {}/{}", state.test_in_cycle, state.settings.tests_per_cycle);
    if let Some(tag) = &probe.variant {
        position.push_str(&format!(" [{}]", tag.name));
    }
    let (level, message) = match &probe.result {
        Ok(result) => (
            LogLevel::Info,
            format!(
                "✅ {position}: {latency_ms:.1}ms ({}) \"{}\" quality {:.2}",
                probe.image,
                result.caption,
                result.quality.score()
            ),
        ),
        Err(error) => (LogLevel::Warn, format!("❌ {position}: {error} after {latency_ms:.1}ms ({})", probe.image)),
    };
    out.log(state, level, message);
    if let Err(error) = &probe.result
        && state.session.successes() == 0
        && let Some(what) = error.contract_mismatch()
    {
        wrong_shape(state, &what, out);
    }
    state.latest = Some(probe);
    let failures = state.consecutive_failures as f64;
    judge(state, RuleKind::ConsecutiveFailures, failures, u64::MAX, out);
}

/// The service answers, but not in the shape of the probe contract, and never did: say so
/// once, plainly, and stop, instead of raising alert after alert.
pub(super) fn wrong_shape(state: &mut DashState, what: &str, out: &mut Effects) {
    let shape = &state.settings.service_shape;
    let message = format!(
        "⛔ The service does not answer in the `{shape}` shape: {what}. Pick another --service-preset \
         (capwatch, fastapi, hf-inference) or set monitoring.service in the config."
    );
    out.log(state, LogLevel::Error, message.clone());
    state.wrong_shape = Some(message);
    quit(state, out);
}

pub(super) fn on_cycle_done(state: &mut DashState, out: &mut Effects) {
    let now = out.clock.now;
    state.cycles += 1;
    state.test_in_cycle = 0;
    out.metric(MetricUpdate::TestCycle);
    state.window.prune(now);
    let window = state.window.snapshot(now);
    if let Some(latency) = &window.latency {
        judge(state, RuleKind::P95Latency, latency.p95_ms, window.successes, out);
    }
    judge(state, RuleKind::ErrorRate, window.error_rate, window.probes, out);
    if let Some(quality) = window.quality_mean {
        judge(state, RuleKind::QualityScore, quality, window.successes, out);
    }
    let label = |kind| state.alerts.severity(kind).to_string();
    let mut lines = vec![
        format!("📊 Cycle {} summary (last {} s window)", state.cycles, state.window.window().as_secs()),
        match &window.latency {
            Some(latency) => {
                format!("📈 P95 response time: {:.2} ms [{}]", latency.p95_ms, label(RuleKind::P95Latency))
            }
            None => {
                format!("📈 P95 response time: — (no successful test in the window) [{}]", label(RuleKind::P95Latency))
            }
        },
        format!("❗ Error rate: {:.1}% [{}]", window.error_rate * 100.0, label(RuleKind::ErrorRate)),
    ];
    if let Some(latency) = &window.latency {
        // Services that do not report a model time have none to show.
        let model = window.model_time.map_or_else(String::new, |model| format!(" · model P95 {:.2} ms", model.p95_ms));
        let percentiles = format!(
            "   P50 {:.2} ms · P99 {:.2} ms · max {:.2} ms{model}",
            latency.p50_ms, latency.p99_ms, latency.max_ms
        );
        lines.insert(2, percentiles);
    }
    lines.push(match window.quality_mean {
        Some(quality) => format!("🎯 Quality score: {quality:.2} [{}]", label(RuleKind::QualityScore)),
        None => format!("🎯 Quality score: — (no successful test in the window) [{}]", label(RuleKind::QualityScore)),
    });
    for line in lines {
        out.log(state, LogLevel::Info, line);
    }
    let record = CycleRecord::of(state, &window, out.stamp(state), now);
    state.cycle_service_ms.clear();
    out.write(Record::Cycle(Box::new(record)));
    compare_variants(state, out);
    if state.settings.stop.cycles.is_some_and(|limit| state.cycles >= limit) {
        quit(state, out);
    }
}

/// At the end of a cycle: the A/B figures, a record per compared variant, verdicts reached
/// announced once, and the `ab_worse` rule judged.
pub(super) fn compare_variants(state: &mut DashState, out: &mut Effects) {
    let Some(ab) = &mut state.ab else { return };
    let reached = ab.refresh();
    let shadow = ab.shadow.clone();
    let records: Vec<Record> = ab
        .figures
        .iter()
        .map(|figures| {
            Record::Ab(Box::new(AbRecord {
                stamp: out.stamp_at(state.started),
                cycle: state.cycles,
                figures: figures.clone(),
                verdict_text: figures.verdict.to_string(),
                shadow: shadow.clone(),
            }))
        })
        .collect();
    let worse = ab.worse_variants().len();
    let figures = ab.figures.clone();
    for record in records {
        out.write(record);
    }
    for figures in &figures {
        out.metric(MetricUpdate::Ab(Box::new(figures.clone())));
    }
    for verdict in reached {
        let level = match verdict {
            Verdict::MoreErrors { .. } | Verdict::LowerQuality { .. } => LogLevel::Warn,
            _ => LogLevel::Info,
        };
        out.log(state, level, format!("⚖ A/B verdict: {verdict}"));
    }
    judge(state, RuleKind::AbWorse, worse as f64, u64::MAX, out);
}
