//! The session summary as Markdown: the table of figures, then the sections that apply
//! (instances, A/B, injected faults, notifications).

use super::*;

impl SessionSummary {
    pub fn markdown(&self) -> String {
        let mut text = self.markdown_table();
        if !self.notifications.is_empty() {
            let tallies: Vec<String> = self.notifications.iter().map(ToString::to_string).collect();
            text.push_str(&format!("| notifications | {} |\n", tallies.join(" · ")));
        }
        if !self.faults.is_empty() {
            text.push_str(
                "\n## Injected faults\n\n| fault | started | active | requests hit | ended |\n|---|---|---|---|---|\n",
            );
            for fault in &self.faults {
                text.push_str(&format!(
                    "| {} | {:.1} s | {:.1} s | {} | {} |\n",
                    fault.fault, fault.started_s, fault.active_s, fault.hits, fault.ended_by
                ));
            }
        }
        if !self.ab.is_empty() {
            text.push_str(&self.ab_markdown());
        }
        if !self.instances.is_empty() {
            text.push_str(&self.instances_markdown());
        }
        if let Some(fleet) = &self.fleet {
            text.push_str(&fleet_markdown(fleet));
        }
        text
    }

    /// The by-instance section (several watched instances).
    fn instances_markdown(&self) -> String {
        let mut text = String::from(
            "\n## By instance\n\nCounts above are summed over the instances; latency figures are the worst instance's.\n\n\
             | instance | last status | tests | error rate | mean P95 | final P95 | quality | alerts | restarts |\n\
             |---|---|---|---|---|---|---|---|---|\n",
        );
        for i in &self.instances {
            text.push_str(&format!(
                "| {} | {} | {} | {:.1} % | {} | {} | {} | {} warning, {} critical | {} |\n",
                i.instance,
                i.last_status,
                i.tests,
                i.error_rate * 100.0,
                measured_ms(i.mean_p95_ms),
                measured_ms(i.final_p95_ms),
                i.quality_mean.map_or_else(|| "—".to_owned(), |q| format!("{q:.2}")),
                i.alerts_warning,
                i.alerts_critical,
                i.restarts
            ));
            if i.left {
                let at = text.rfind(&format!("| {} |", i.instance)).unwrap_or(0);
                text.insert_str(at + i.instance.len() + 2, " (left)");
            }
        }
        text
    }

    /// The A/B section: each variant's figures, then each comparison and its verdict.
    fn ab_markdown(&self) -> String {
        let mut text = String::from(
            "\n## A/B comparison\n\n| variant | n | P50 ms (95 % CI) | P95 ms (95 % CI) | errors | quality |\n|---|---|---|---|---|---|\n",
        );
        let estimate = |e: &Option<Estimate>| {
            e.as_ref().map_or_else(
                || "—".to_owned(),
                |e| format!("{:.1} ({:.1}–{:.1})", e.value, e.interval.lo, e.interval.hi),
            )
        };
        let row = |v: &VariantFigures| {
            format!(
                "| {} | {} | {} | {} | {:.1} % | {} |\n",
                v.name,
                v.answers,
                estimate(&v.p50_ms),
                estimate(&v.p95_ms),
                v.error_rate * 100.0,
                v.quality_mean.map_or_else(|| "—".to_owned(), |q| format!("{q:.2}"))
            )
        };
        if let Some(first) = self.ab.first() {
            text.push_str(&row(&first.figures.a));
        }
        for ab in &self.ab {
            text.push_str(&row(&ab.figures.b));
        }
        text.push('\n');
        for ab in &self.ab {
            let f = &ab.figures;
            let mut parts = vec![format!("{} pairs", f.pairs)];
            if let Some(ratio) = &f.latency_ratio {
                let p = f.latency_p.map_or_else(String::new, |p| format!(", Mann-Whitney p = {p:.3}"));
                parts.push(format!(
                    "latency ×{:.2} ({:.2}–{:.2}){p}",
                    ratio.value, ratio.interval.lo, ratio.interval.hi
                ));
            }
            if let Some(errors) = &f.errors {
                parts.push(format!(
                    "errors {:+.1} points ({:+.1}–{:+.1})",
                    errors.difference * 100.0,
                    errors.interval.lo * 100.0,
                    errors.interval.hi * 100.0
                ));
            }
            if let Some(quality) = &f.quality {
                parts.push(format!(
                    "quality {:+.3} ({:+.3}–{:+.3})",
                    quality.difference, quality.interval.lo, quality.interval.hi
                ));
            }
            if let Some(agreement) = f.agreement {
                parts.push(format!("same caption {:.0} %", agreement * 100.0));
            }
            text.push_str(&format!(
                "- **{} vs {}**: {}. Verdict: {}\n",
                f.b.name,
                f.a.name,
                parts.join(", "),
                ab.verdict_text
            ));
        }
        if let Some(shadow) = &self.shadow {
            let agreement = shadow.agreement.map_or_else(|| "—".to_owned(), |a| format!("{:.1} %", a * 100.0));
            text.push_str(&format!(
                "- **shadow {}** ({:.0} % of routed requests): agreed {agreement} ({} agreed, {} differed, {} failed, {} dropped)\n",
                shadow.model,
                shadow.share * 100.0,
                shadow.agreed,
                shadow.differed,
                shadow.failed,
                shadow.dropped
            ));
        }
        text
    }

    fn markdown_table(&self) -> String {
        format!(
            "# capwatch session summary\n\n\
             | | |\n|---|---|\n\
             | started | {} |\n| ended | {} |\n| duration | {:.1} s |\n\
             | test cycles | {} |\n| tests | {} |\n| success rate | {:.1} % |\n| error rate | {:.1} % |\n\
             | mean P95 | {} |\n| final P95 | {} |\n\
             | last status | {} |\n| last caption | {} |\n\
             | alerts fired | {} warning, {} critical |\n| alert events | {} |\n| restarts | {} |\n",
            self.started_at,
            self.ended_at,
            self.duration_s,
            self.cycles,
            self.tests,
            self.success_rate * 100.0,
            self.error_rate * 100.0,
            measured_ms(self.mean_p95_ms),
            measured_ms(self.final_p95_ms),
            self.last_status,
            self.last_caption.as_deref().unwrap_or("-"),
            self.alerts_warning,
            self.alerts_critical,
            self.alert_events,
            self.restarts,
        )
    }
}

/// A latency that may not have been measured: `12.34 ms`, or `— (no successful test)`.
fn measured_ms(value: Option<f64>) -> String {
    value.map_or_else(|| "— (no successful test)".to_owned(), |ms| format!("{ms:.2} ms"))
}

/// How many of the latest joins and leaves the Markdown lists (the JSON has them all).
const FLEET_CHANGES_SHOWN: usize = 20;

/// The fleet section: its size over the session and the latest changes.
fn fleet_markdown(fleet: &FleetSummary) -> String {
    let mut text = format!(
        "\n## Fleet\n\n{} joined, {} left; between {} and {} instances, {} at the end.\n\n\
         | at | change | instance | instances after |\n|---|---|---|---|\n",
        fleet.joined, fleet.left, fleet.min_instances, fleet.max_instances, fleet.final_instances
    );
    let skipped = fleet.changes.len().saturating_sub(FLEET_CHANGES_SHOWN);
    if skipped > 0 {
        text.push_str(&format!("| … | {skipped} earlier changes | | |\n"));
    }
    for change in &fleet.changes[skipped..] {
        let what = match change.change {
            super::super::record::FleetChange::Joined => "➕ joined",
            super::super::record::FleetChange::Left => "➖ left",
        };
        text.push_str(&format!("| {:.1} s | {what} | {} | {} |\n", change.uptime_s, change.instance, change.instances));
    }
    text
}
