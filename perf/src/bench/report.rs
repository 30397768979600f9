//! The result of a run: a serialisable [`Report`], its human summary ([`Report::summary`]) and
//! an SVG chart of concurrent calls, call attempts per second, RTP loss and gateway CPU over
//! time ([`Report::svg`], hand-written SVG with no dependency).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::quality::Estimate;
use super::ua::Codec;
use super::Mode;

/// p50/p99/max of a set of values.
#[derive(Debug, Clone, Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

/// One RTP stream as the bench received it.
#[derive(Debug, Clone, Serialize)]
pub struct StreamResult {
    pub id: u32,
    /// `caller` (the bench's outgoing call) or `callee` (a call the gateway delivered).
    pub leg: String,
    /// The bench call number (caller) or delivered-leg number (callee).
    pub call: u64,
    /// The gateway's media address for this stream.
    pub remote: String,
    pub sent: u64,
    pub received: u64,
    pub expected: u64,
    pub lost: u64,
    pub jitter_ms: f64,
    pub delay_ms_mean: f64,
    pub delay_ms_max: f64,
    pub dtmf_events: u32,
    /// Packets of another bench stream (a stale stream forwarded into a recycled port).
    pub misrouted: u64,
}

/// Media totals.
#[derive(Debug, Clone, Serialize)]
pub struct MediaSummary {
    pub streams: u64,
    pub packets_sent: u64,
    pub packets_received: u64,
    pub expected: u64,
    pub lost: u64,
    pub loss_pct: f64,
    pub jitter_ms_mean: f64,
    pub jitter_ms_max: f64,
    pub delay_ms_p50: f64,
    pub delay_ms_p99: f64,
    pub delay_ms_max: f64,
    /// Packets from addresses no stream expected (late packets of ended calls).
    pub unmatched_packets: u64,
    /// Packets of another bench stream on a stream's address (see [`StreamResult::misrouted`]).
    pub misrouted_packets: u64,
    pub dtmf_events_received: u64,
}

/// The gateway's CPU use.
#[derive(Debug, Clone, Serialize)]
pub struct CpuSummary {
    pub pid: u32,
    pub total_mean_pct: f64,
    pub per_core_mean_pct: Vec<f64>,
    pub per_core_peak_pct: Vec<f64>,
}

/// One ramp step.
#[derive(Debug, Clone, Serialize)]
pub struct RampStep {
    pub step: u64,
    pub rate: f64,
    pub achieved_cps: f64,
    pub attempts: u64,
    pub failures: u64,
    pub failure_pct: f64,
    pub loss_pct: f64,
    pub setup_p99_ms: f64,
    pub max_concurrent: u64,
    pub passed: bool,
}

/// Ramp outcome: the last step within budget.
#[derive(Debug, Clone, Serialize)]
pub struct RampSummary {
    pub failure_budget_pct: f64,
    pub loss_budget_pct: f64,
    pub setup_budget_ms: f64,
    pub step_s: f64,
    pub max_concurrent_ok: u64,
    pub max_cps_ok: f64,
    pub steps: Vec<RampStep>,
}

/// One point of the time series (once a second).
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    pub t_s: f64,
    pub concurrent: u64,
    pub cps: f64,
    pub failures: u64,
    pub loss_pct: f64,
    pub cpu_pct: f64,
    pub cpu_per_core_pct: Vec<f64>,
}

/// Everything a run measured (the `--json` file).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub mode: Mode,
    pub target: String,
    pub codec: Codec,
    pub users: Vec<String>,
    pub trunk: bool,
    pub dial: Option<String>,
    pub calls: usize,
    pub rate: f64,
    pub duration_s: f64,
    pub sip_sources: usize,
    pub registered: usize,
    pub elapsed_s: f64,
    pub attempts: u64,
    pub answered: u64,
    pub failed: u64,
    pub failures_by_code: BTreeMap<String, u64>,
    pub completed: u64,
    pub dropped_by_gateway: u64,
    pub unfinished: u64,
    pub attempts_per_s: f64,
    pub setup_ms: Percentiles,
    pub max_concurrent: u64,
    pub media: MediaSummary,
    pub quality: Estimate,
    pub cpu: Option<CpuSummary>,
    pub ramp: Option<RampSummary>,
    pub stopped_by: String,
    pub series: Vec<Sample>,
    pub streams: Vec<StreamResult>,
}

impl Report {
    /// The JSON document.
    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// A human summary (a few lines).
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let mode = serde_json::to_value(self.mode)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let _ = writeln!(
            s,
            "tandem-bench {mode} -> {} ({}, {} SIP source address(es)), {:.1} s",
            self.target,
            self.codec.name(),
            self.sip_sources,
            self.elapsed_s
        );
        let _ = writeln!(
            s,
            "calls: {} attempted ({:.1}/s), {} answered, {} failed, {} completed, {} dropped by \
             gateway, {} unfinished; max concurrent {}",
            self.attempts,
            self.attempts_per_s,
            self.answered,
            self.failed,
            self.completed,
            self.dropped_by_gateway,
            self.unfinished,
            self.max_concurrent
        );
        if !self.failures_by_code.is_empty() {
            let f: Vec<String> = self
                .failures_by_code
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect();
            let _ = writeln!(s, "failures by code: {}", f.join(", "));
        }
        let _ = writeln!(
            s,
            "setup latency: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            self.setup_ms.p50, self.setup_ms.p99, self.setup_ms.max
        );
        let m = &self.media;
        let _ = writeln!(
            s,
            "media: {} streams, {} sent, {} received, loss {:.3}% ({} of {}), jitter mean {:.2} \
             ms max {:.2} ms, one-way delay p50 {:.2} ms p99 {:.2} ms max {:.2} ms",
            m.streams,
            m.packets_sent,
            m.packets_received,
            m.loss_pct,
            m.lost,
            m.expected,
            m.jitter_ms_mean,
            m.jitter_ms_max,
            m.delay_ms_p50,
            m.delay_ms_p99,
            m.delay_ms_max
        );
        if m.misrouted_packets > 0 || m.unmatched_packets > 0 {
            let _ = writeln!(
                s,
                "stray media: {} packets of ended calls, {} packets of another call's stream \
                 (not counted as received)",
                m.unmatched_packets, m.misrouted_packets
            );
        }
        if m.dtmf_events_received > 0 {
            let _ = writeln!(s, "dtmf: {} events received", m.dtmf_events_received);
        }
        if m.streams > 0 {
            let _ = writeln!(
                s,
                "quality (E-model, G.107 simplified): R {:.1}, MOS {:.2} (mouth-to-ear {:.1} ms)",
                self.quality.r_factor, self.quality.mos, self.quality.mouth_to_ear_ms
            );
        }
        if let Some(c) = &self.cpu {
            let per: Vec<String> = c
                .per_core_mean_pct
                .iter()
                .zip(&c.per_core_peak_pct)
                .enumerate()
                .map(|(i, (m, p))| format!("cpu{i} {m:.1}% (peak {p:.1}%)"))
                .collect();
            let _ = writeln!(
                s,
                "gateway pid {} CPU: {:.1}% total; {}",
                c.pid,
                c.total_mean_pct,
                per.join(", ")
            );
        }
        if let Some(r) = &self.ramp {
            let _ = writeln!(
                s,
                "ramp: max within budget (failures <= {}%, loss <= {}%, setup p99 <= {} ms): {} \
                 concurrent calls at {:.1} calls/s; {} steps of {} s",
                r.failure_budget_pct,
                r.loss_budget_pct,
                r.setup_budget_ms,
                r.max_concurrent_ok,
                r.max_cps_ok,
                r.steps.len(),
                r.step_s
            );
        }
        if !self.stopped_by.is_empty() {
            let _ = writeln!(s, "placing stopped: {}", self.stopped_by);
        }
        s
    }

    /// An SVG chart: four stacked panels over time (concurrent calls, CPS, loss %, CPU %).
    pub fn svg(&self) -> String {
        let panels: [(&str, &str, Vec<f64>); 4] = [
            (
                "concurrent calls",
                "#1f77b4",
                self.series.iter().map(|p| p.concurrent as f64).collect(),
            ),
            (
                "call attempts / s",
                "#2ca02c",
                self.series.iter().map(|p| p.cps).collect(),
            ),
            (
                "RTP loss %",
                "#d62728",
                self.series.iter().map(|p| p.loss_pct).collect(),
            ),
            (
                "gateway CPU % (sum of cores)",
                "#9467bd",
                self.series.iter().map(|p| p.cpu_pct).collect(),
            ),
        ];
        let ts: Vec<f64> = self.series.iter().map(|p| p.t_s).collect();
        let tmax = ts.iter().copied().fold(1.0, f64::max);
        let (w, ph, left, top, gap) = (900.0, 140.0, 70.0, 40.0, 40.0);
        let pw = w - left - 30.0;
        let h = top + 4.0 * (ph + gap) + 10.0;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\" \
             width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" font-family=\"sans-serif\" \
             font-size=\"12\">"
        );
        let _ = writeln!(s, "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>");
        let title = format!(
            "tandem-bench {} {}: {} attempts, max {} concurrent, loss {:.3}%, MOS {:.2}",
            serde_json::to_value(self.mode)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            self.codec.name(),
            self.attempts,
            self.max_concurrent,
            self.media.loss_pct,
            self.quality.mos
        );
        let _ = writeln!(
            s,
            "<text x=\"{left}\" y=\"22\" font-size=\"15\">{}</text>",
            xml_escape(&title)
        );
        for (k, (name, color, ys)) in panels.iter().enumerate() {
            let y0 = top + k as f64 * (ph + gap);
            let ymax = nice_max(ys.iter().copied().fold(0.0, f64::max));
            let _ = writeln!(
                s,
                "<rect x=\"{left}\" y=\"{y0}\" width=\"{pw}\" height=\"{ph}\" fill=\"none\" \
                 stroke=\"#888\"/>"
            );
            let _ = writeln!(
                s,
                "<text x=\"{}\" y=\"{}\">{}</text>",
                left + 5.0,
                y0 + 14.0,
                xml_escape(name)
            );
            let _ = writeln!(
                s,
                "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>\
                 <text x=\"{}\" y=\"{}\" text-anchor=\"end\">0</text>",
                left - 5.0,
                y0 + 10.0,
                fmt_num(ymax),
                left - 5.0,
                y0 + ph
            );
            let _ = writeln!(
                s,
                "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{:.0} s</text>",
                left + pw,
                y0 + ph + 15.0,
                tmax
            );
            if !ys.is_empty() {
                let pts: Vec<String> = ts
                    .iter()
                    .zip(ys)
                    .map(|(t, y)| {
                        format!(
                            "{:.1},{:.1}",
                            left + t / tmax * pw,
                            y0 + ph - (y / ymax).clamp(0.0, 1.0) * ph
                        )
                    })
                    .collect();
                let _ = writeln!(
                    s,
                    "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" \
                     points=\"{}\"/>",
                    pts.join(" ")
                );
            }
        }
        s.push_str("</svg>\n");
        s
    }
}

/// A round axis maximum at or above `v` (1, 2, 5 x 10^n; at least 1).
fn nice_max(v: f64) -> f64 {
    if v.is_nan() || v <= 1.0 {
        return 1.0;
    }
    let e = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 5.0, 10.0] {
        if m * e >= v {
            return m * e;
        }
    }
    10.0 * e
}

fn fmt_num(v: f64) -> String {
    if v >= 10.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> Report {
        Report {
            mode: Mode::Hold,
            target: "127.0.0.1:5060".into(),
            codec: Codec::Pcmu,
            users: vec!["1001".into()],
            trunk: false,
            dial: None,
            calls: 2,
            rate: 1.0,
            duration_s: 1.0,
            sip_sources: 1,
            registered: 1,
            elapsed_s: 3.0,
            attempts: 2,
            answered: 2,
            failed: 0,
            failures_by_code: BTreeMap::new(),
            completed: 2,
            dropped_by_gateway: 0,
            unfinished: 0,
            attempts_per_s: 1.0,
            setup_ms: Percentiles {
                count: 2,
                p50: 3.0,
                p99: 4.0,
                max: 4.0,
            },
            max_concurrent: 2,
            media: MediaSummary {
                streams: 4,
                packets_sent: 200,
                packets_received: 200,
                expected: 200,
                lost: 0,
                loss_pct: 0.0,
                jitter_ms_mean: 0.1,
                jitter_ms_max: 0.2,
                delay_ms_p50: 0.3,
                delay_ms_p99: 0.5,
                delay_ms_max: 1.0,
                unmatched_packets: 0,
                misrouted_packets: 0,
                dtmf_events_received: 0,
            },
            quality: super::super::quality::estimate(Codec::Pcmu, 0.3, 0.1, 0.0),
            cpu: None,
            ramp: None,
            stopped_by: "all calls placed".into(),
            series: (0..3)
                .map(|i| Sample {
                    t_s: i as f64,
                    concurrent: i,
                    cps: 1.0,
                    failures: 0,
                    loss_pct: 0.0,
                    cpu_pct: 12.5,
                    cpu_per_core_pct: vec![12.5],
                })
                .collect(),
            streams: Vec::new(),
        }
    }

    #[test]
    fn json_has_the_headline_fields() {
        let v: serde_json::Value = serde_json::from_str(&report().json()).unwrap();
        assert_eq!(v["mode"], "hold");
        assert_eq!(v["codec"], "pcmu");
        assert_eq!(v["setup_ms"]["p99"], 4.0);
        assert_eq!(v["series"].as_array().unwrap().len(), 3);
        assert!(v["quality"]["mos"].as_f64().unwrap() > 4.0);
    }

    #[test]
    fn svg_has_four_panels_and_escapes_text() {
        let svg = report().svg();
        assert!(svg.starts_with("<?xml"));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 4);
        assert!(svg.contains("concurrent calls"));
        assert_eq!(xml_escape("a<b&\"c\""), "a&lt;b&amp;&quot;c&quot;");
    }

    #[test]
    fn axis_maxima_are_round() {
        assert_eq!(nice_max(0.0), 1.0);
        assert_eq!(nice_max(3.2), 5.0);
        assert_eq!(nice_max(17.0), 20.0);
        assert_eq!(nice_max(100.0), 100.0);
        assert_eq!(nice_max(f64::NAN), 1.0);
    }

    #[test]
    fn summary_mentions_failures_and_quality() {
        let mut r = report();
        r.failures_by_code.insert("503".into(), 3);
        let s = r.summary();
        assert!(s.contains("503: 3"), "{s}");
        assert!(s.contains("MOS"), "{s}");
    }
}
