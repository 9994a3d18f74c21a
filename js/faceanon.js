// FaceAnon frontend extension (public extension API only: app.registerExtension + beforeRegisterNodeDef).
//
// 1. A colour for every node of the pack (category "FaceAnon/..."), set on the node class, so it is not written
//    into saved workflows and a colour the user picks still wins.
// 2. After a run, Anonymize Faces / Detect Faces / Verify Anonymization / Track Faces / Anonymize People show under
//    the node what happened: how many faces (people) were found and anonymized, and in red every image NOT
//    anonymized, face that failed the check, face blurred by the fallback or lost by tracking (plus a toast). The lines are built from the structured fields the nodes put in their UI result
//    ("faceanon_report": JSON), not from the report text.
// 3. System Check shows its whole report in a read-only text box on the node ("text"), the summary under it.
import { app } from "../../scripts/app.js";

const PACK_COLOR = "#2b5763";
const PACK_BGCOLOR = "#1d3a42";
const FULL_TEXT_NODES = new Set(["FaceAnonSystemCheck"]);
const TEXT_WIDGET = "faceanon_text";
const OK_COLOR = "#7fd67f";
const WARN_COLOR = "#ff6b5a";

// The nodes send their report's structured fields as JSON under "faceanon_report" (nodes/faces.py ui_payload);
// the lines shown are built from those fields, never parsed out of the report text.
function reportFields(output) {
    const raw = output?.faceanon_report;
    if (!raw?.length) return null;
    return JSON.parse(Array.isArray(raw) ? raw[0] : raw);
}

function noFaceLines(images) {
    return (images ?? []).map((i) => `image ${i}: no face found, NOT anonymized`);
}

const SUMMARIES = {
    FaceAnonymize(report) {
        const faces = report.faces ?? [];
        const done = faces.filter((f) => f.anonymized !== false).length;
        const warnings = noFaceLines(report.not_anonymized_images);
        const notDone = faces.length - done;
        if (notDone > 0) warnings.unshift(`${notDone} face(s) NOT anonymized`);
        return { headline: `${faces.length} face(s) found, ${done} anonymized`, warnings };
    },
    FaceAnonDetectFaces(report) {
        return {
            headline: `${report.n_faces} face(s) in ${report.batch_size} image(s)`,
            warnings: noFaceLines(report.images_without_faces),
        };
    },
    FaceAnonTrackFaces(report) {
        const tracks = report.tracks ?? [];
        const warnings = tracks.filter((t) => t.lost?.length)
            .map((t) => `track ${t.track}: face LOST in ${t.lost.length} frame(s), check them`);
        const cuts = report.cuts?.length ? `, ${report.cuts.length} cut(s)` : "";
        return { headline: `${tracks.length} track(s) in ${report.frames} frame(s)${cuts}`, warnings };
    },
    FaceAnonAnonymizePeople(report) {
        const tracks = report.tracks ?? [];
        const done = tracks.filter((t) => t.anonymized?.length || t.blurred?.length).length;
        const exempt = tracks.filter((t) => t.exempt?.length).length;
        const warnings = [];
        for (const t of tracks) {
            if (t.blurred?.length) warnings.push(`track ${t.track}: anonymization failed, BLURRED in ${t.blurred.length} frame(s)`);
            if (t.lost?.length) warnings.push(`track ${t.track}: face LOST in ${t.lost.length} frame(s), check them`);
        }
        warnings.push(...(report.notes ?? []));
        return { headline: `${tracks.length} person(s): ${done} anonymized, ${exempt} kept`, warnings };
    },
    FaceAnonVerify(report) {
        const unchecked = report.images_without_faces ?? [];
        const warnings = unchecked.length
            ? [`WARNING: no face found in original image(s) ${unchecked.join(", ")}: nothing was checked there`]
            : [];
        for (const face of report.faces ?? []) if (face.status !== "pass") warnings.push(face.text);
        return { headline: report.summary, warnings, failed: !report.passed };
    },
    FaceAnonSystemCheck(report) {
        return { headline: report.headline, warnings: (report.problems ?? []).map((p) => `WARNING: ${p}`) };
    },
};

// -> {level: "ok" | "warn", lines: [string]} or null. Line 0 is the headline; every further line is a warning.
export function summarize(nodeType, output) {
    const summary = SUMMARIES[nodeType];
    if (!summary || !output) return null;
    let report;
    try {
        report = reportFields(output);
    } catch (e) {
        return { level: "warn", lines: ["FaceAnon: unreadable report"] };
    }
    if (!report) return null;
    const { headline, warnings, failed } = summary(report);
    const level = failed || warnings.length ? "warn" : "ok";
    return { level, lines: [headline, ...warnings].slice(0, 6) };
}

function notify(node, status) {
    if (status.level !== "warn") return;
    const toast = app.extensionManager?.toast;
    if (!toast?.add) return;
    toast.add({
        severity: "warn",
        summary: `FaceAnon: ${node.title}`,
        detail: status.lines.join("\n"),
        life: 10000,
    });
}

const MAX_LINES = 5;

// Word-wrap `text` to `maxWidth` pixels.
function wrap(ctx, text, maxWidth) {
    const out = [];
    let line = "";
    for (const word of text.split(" ")) {
        const next = line ? `${line} ${word}` : word;
        if (line && ctx.measureText(next).width > maxWidth) {
            out.push(line);
            line = word;
        } else {
            line = next;
        }
    }
    if (line) out.push(line);
    return out;
}

function drawStatus(node, ctx) {
    const status = node.faceanonStatus;
    if (!status || node.flags?.collapsed) return;
    const lineHeight = 16;
    const pad = 6;
    const y0 = node.size[1] + 8;
    const width = Math.max(node.size[0], 220);
    ctx.save();
    ctx.font = "12px sans-serif";
    let rows = [];
    status.lines.forEach((line, i) => {
        const warn = i > 0 || status.level === "warn";  // the headline takes the level's colour
        for (const part of wrap(ctx, line, width - 2 * pad)) rows.push([part, warn]);
    });
    if (rows.length > MAX_LINES) rows = [...rows.slice(0, MAX_LINES - 1), ["… (see the report)", rows[MAX_LINES - 1][1]]];
    ctx.fillStyle = "rgba(0, 0, 0, 0.75)";
    ctx.beginPath();
    if (ctx.roundRect) ctx.roundRect(0, y0, width, rows.length * lineHeight + pad, 6);
    else ctx.rect(0, y0, width, rows.length * lineHeight + pad);
    ctx.fill();
    rows.forEach(([text, warn], i) => {
        ctx.fillStyle = warn ? WARN_COLOR : OK_COLOR;
        ctx.fillText(text, pad, y0 + pad / 2 + (i + 1) * lineHeight - 4);
    });
    ctx.restore();
}

// The whole text in a read-only, scrollable box on the node (a DOM widget; not saved with the workflow).
function showText(node, text) {
    let widget = node.widgets?.find((w) => w.name === TEXT_WIDGET);
    if (!widget) {
        if (typeof node.addDOMWidget !== "function") return;
        const el = document.createElement("textarea");
        el.readOnly = true;
        el.spellcheck = false;
        el.style.cssText = "width:100%;height:100%;box-sizing:border-box;font:11px monospace;white-space:pre;" +
            "overflow:auto;resize:none;background:#111;color:#ddd;border:none;padding:4px;";
        widget = node.addDOMWidget(TEXT_WIDGET, "faceanon_text", el, { serialize: false });
        widget.serialize = false;
        node.setSize?.([Math.max(node.size[0], 720), Math.max(node.size[1], 460)]);
    }
    widget.element.value = text;
}

app.registerExtension({
    name: "faceanon.nodes",

    async beforeRegisterNodeDef(nodeType, nodeData) {
        if (!String(nodeData?.category ?? "").startsWith("FaceAnon")) return;
        nodeType.color = PACK_COLOR;
        nodeType.bgcolor = PACK_BGCOLOR;
        if (!(nodeData.name in SUMMARIES)) return;

        const onExecuted = nodeType.prototype.onExecuted;
        nodeType.prototype.onExecuted = function (output) {
            const r = onExecuted?.apply(this, arguments);
            try {
                if (FULL_TEXT_NODES.has(nodeData.name) && output?.text) {
                    showText(this, Array.isArray(output.text) ? output.text.join("\n") : String(output.text));
                }
                const status = summarize(nodeData.name, output);
                if (status) {
                    this.faceanonStatus = status;
                    notify(this, status);
                    this.setDirtyCanvas?.(true, true);
                }
            } catch (e) {
                console.warn("[FaceAnon] could not show the report", e);
            }
            return r;
        };

        const onDrawForeground = nodeType.prototype.onDrawForeground;
        nodeType.prototype.onDrawForeground = function (ctx) {
            const r = onDrawForeground?.apply(this, arguments);
            try {
                drawStatus(this, ctx);
            } catch (e) {
                // drawing must never break the canvas
            }
            return r;
        };
    },
});
