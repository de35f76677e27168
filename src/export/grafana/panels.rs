//! The pieces the Grafana dashboard is made of: a query target, threshold steps, a panel and
//! value mappings, as Grafana's JSON model writes them.

use super::*;

pub(super) fn target(expr: &str, legend: &str) -> Value {
    json!({
        "datasource": {"type": "prometheus", "uid": DATASOURCE},
        "expr": expr,
        "legendFormat": legend,
        "refId": "",
    })
}

/// Steps for green → yellow → red (or the reverse for "lower is worse").
pub(super) fn steps(warning: f64, critical: f64, lower_is_worse: bool) -> Value {
    if lower_is_worse {
        json!([
            {"color": "red", "value": null},
            {"color": "yellow", "value": critical},
            {"color": "green", "value": warning},
        ])
    } else {
        json!([
            {"color": "green", "value": null},
            {"color": "yellow", "value": warning},
            {"color": "red", "value": critical},
        ])
    }
}

pub(super) struct Panel<'a> {
    pub(super) kind: &'a str,
    pub(super) title: &'a str,
    pub(super) description: &'a str,
    pub(super) targets: Vec<Value>,
    pub(super) unit: &'a str,
    pub(super) thresholds: Option<Value>,
    pub(super) mappings: Value,
    pub(super) grid: (u32, u32, u32, u32),
}

impl Panel<'_> {
    pub(super) fn build(self, id: usize) -> Value {
        let (x, y, w, h) = self.grid;
        let targets: Vec<Value> = self
            .targets
            .into_iter()
            .enumerate()
            .map(|(index, mut target)| {
                target["refId"] = json!(char::from(b'A' + u8::try_from(index % 26).unwrap_or(0)).to_string());
                target
            })
            .collect();
        let threshold_style = if self.thresholds.is_some() && self.kind == "timeseries" { "line" } else { "off" };
        let thresholds = self.thresholds.unwrap_or_else(|| json!([{"color": "green", "value": null}]));
        json!({
            "id": id,
            "type": self.kind,
            "title": self.title,
            "description": self.description,
            "datasource": {"type": "prometheus", "uid": DATASOURCE},
            "gridPos": {"x": x, "y": y, "w": w, "h": h},
            "targets": targets,
            "fieldConfig": {
                "defaults": {
                    "unit": self.unit,
                    "mappings": self.mappings,
                    "thresholds": {"mode": "absolute", "steps": thresholds},
                    "color": {"mode": if self.kind == "timeseries" { "palette-classic" } else { "thresholds" }},
                    "custom": {"thresholdsStyle": {"mode": threshold_style}},
                },
                "overrides": [],
            },
            "options": {
                "legend": {"displayMode": "list", "placement": "bottom", "showLegend": true},
                "tooltip": {"mode": "multi", "sort": "none"},
                "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": false},
                "colorMode": "background",
                "textMode": "auto",
            },
        })
    }
}

pub(super) fn value_map(entries: &[(i64, &str, &str)]) -> Value {
    let options: serde_json::Map<String, Value> = entries
        .iter()
        .enumerate()
        .map(|(index, (value, text, colour))| {
            (value.to_string(), json!({"text": text, "color": colour, "index": index}))
        })
        .collect();
    json!([{"type": "value", "options": options}])
}
