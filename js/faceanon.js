// FaceAnon frontend extension (public extension API only: app.registerExtension + beforeRegisterNodeDef).
//
// 1. A colour for every node of the pack (category "FaceAnon/..."), set on the node class, so it is not written
//    into saved workflows and a colour the user picks still wins.
// 2. After a run, Anonymize Faces / Detect Faces / Verify Anonymization show under the node what happened: how
//    many faces were found and anonymized, and in red every image NOT anonymized or face that failed the check
//    (plus a warning toast). The text comes from the node's UI result ("faceanon_report" JSON or "text").
// 3. System Check shows its whole report in a read-only text box on the node (and the summary under it).
import { app } from "../../scripts/app.js";

const PACK_COLOR = "#2b5763";
const PACK_BGCOLOR = "#1d3a42";
const REPORT_NODES = new Set(["FaceAnonymize", "FaceAnonDetectFaces", "FaceAnonVerify", "FaceAnonSystemCheck"]);
const FULL_TEXT_NODES = new Set(["FaceAnonSystemCheck"]);
const TEXT_WIDGET = "faceanon_text";
const OK_COLOR = "#7fd67f";
const WARN_COLOR = "#ff6b5a";

function firstLine(text) {
    return String(text ?? "").split("\n")[0].trim();
}

// -> {level: "ok" | "warn", lines: [string]} or null
export function summarize(nodeType, output) {
    if (!output) return null;
    if (nodeType === "FaceAnonymize" && output.faceanon_report?.length) {
        let report;
        try {
            report = JSON.parse(output.faceanon_report[0]);
        } catch (e) {
            return { level: "warn", lines: ["FaceAnon: unreadable report"] };
        }
        const faces = report.faces ?? [];
        const missed = report.not_anonymized_images ?? [];
        const done = faces.filter((f) => f.anonymized !== false).length;
        const lines = [`${faces.length} face(s) found, ${done} anonymized`];
        const notDone = faces.length - done;
        if (notDone > 0) lines.push(`${notDone} face(s) NOT anonymized`);
        for (const i of missed) lines.push(`image ${i}: no face found, NOT anonymized`);
        return { level: notDone > 0 || missed.length ? "warn" : "ok", lines };
    }
    const text = Array.isArray(output.text) ? output.text.join("\n") : output.text;
    if (!text) return null;
    const lines = [firstLine(text)];
    for (const line of String(text).split("\n").slice(1)) {
        if (/NOT anonymized|FAIL|WARNING/.test(line)) lines.push(line.trim());
    }
    const level = lines.some((l) => /NOT anonymized|FAIL|WARNING/.test(l)) ? "warn" : "ok";
    return { level, lines: lines.slice(0, 6) };
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
    for (const line of status.lines) {
        const warn = /NOT anonymized|FAIL|WARNING|unreadable/.test(line);
        for (const part of wrap(ctx, line, width - 2 * pad)) rows.push([part, warn]);
    }
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
        if (!REPORT_NODES.has(nodeData.name)) return;

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
