"""Document ingest throughput and memory: pages/s for PDF text extraction, page rendering, OCR and the whole
``mmembed index`` path, and peak RSS while indexing a 300-page PDF (it must stay flat: pages stream).

Peer: LangChain's ``PyPDFLoader`` (pypdf) reading the same PDF + text-only embedding of its pages with the same
encoder, the usual text-only RAG ingest. Install the peer with ``pip install 'mmembed[bench-documents]'``.

The PDFs are generated here (fpdf2): a 300-page report with text on every page and a chart every 10th page,
and a 10-page "scanned" PDF (pictures of text, no text layer) for OCR.

    python benchmarks/bench_documents.py                      # writes benchmarks/results/documents.json
    python benchmarks/bench_documents.py --pages 60 --ocr-pages 3 --out /tmp/d.json   # quick
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from bench_quality import RESULTS, load_average, run_header, write_json  # noqa: E402


def rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


class RssSampler:
    """Samples this process's RSS every ``interval`` seconds; ``marks`` records RSS when a page count is hit."""

    def __init__(self, interval: float = 0.05) -> None:
        self.interval, self.peak, self.samples = interval, 0.0, 0
        self.series: list[tuple[float, float]] = []  # (seconds since start, RSS MB)
        self.t0 = time.perf_counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            now = rss_mb()
            self.peak = max(self.peak, now)
            self.series.append((time.perf_counter() - self.t0, now))
            self.samples += 1
            time.sleep(self.interval)

    def peak_until(self, fraction: float) -> float:
        """Peak RSS over the first ``fraction`` of the run's duration."""
        end = self.series[-1][0] * fraction if self.series else 0.0
        return max((r for t, r in self.series if t <= end), default=self.peak)

    def __enter__(self) -> "RssSampler":
        self.t0 = time.perf_counter()
        self.peak = rss_mb()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def make_report_pdf(path: Path, pages: int) -> Path:
    from fpdf import FPDF

    from documents_support import text_image

    chart = path.with_name("chart.png")
    text_image(chart, ["quarterly chart", "Q1 Q2 Q3 Q4"], size=(600, 300))
    pdf = FPDF(unit="pt", format="A4")
    pdf.set_auto_page_break(False)
    for i in range(pages):
        pdf.add_page()
        pdf.set_font("Helvetica", size=11)
        pdf.set_xy(50, 50)
        body = " ".join(f"Section {i}.{j}: the harbour of town {i} shipped {i * 7 + j} tonnes of goods this "
                        f"season, a change of {j}% on the last." for j in range(12))
        pdf.multi_cell(495, 15, body)
        if i % 10 == 0:
            pdf.image(str(chart), x=50, y=450, w=400)
    pdf.output(str(path))
    return path


def make_scanned_pdf(path: Path, pages: int) -> Path:
    from documents_support import make_pdf

    return make_pdf(path, [None] * pages, scanned={i: [f"Scanned invoice {i}", "Total due: 1234 euros",
                                                        "Payable within thirty days"] for i in range(pages)})


def timed(fn: Any) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pages", type=int, default=300)
    ap.add_argument("--ocr-pages", type=int, default=10)
    ap.add_argument("--dpi", type=float, default=100.0)
    ap.add_argument("--encoder", default="default")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=None, help="torch threads")
    ap.add_argument("--out", type=Path, default=RESULTS / "documents.json")
    args = ap.parse_args(argv)
    load_start = load_average()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    import pypdfium2 as pdfium

    from mmembed import load_encoder
    from mmembed.documents import LoadOptions
    from mmembed.documents.indexing import index_paths
    from mmembed.documents.ocr import ocr_text
    from mmembed.documents.pdf import iter_pages, open_pdf
    from mmembed.store import Store

    work = Path(tempfile.mkdtemp(prefix="bench-documents-"))
    report_pdf = make_report_pdf(work / "report.pdf", args.pages)
    scanned_pdf = make_scanned_pdf(work / "scanned.pdf", args.ocr_pages)
    n = args.pages
    results: dict[str, Any] = {}

    # 1. text layer only (PDFium), no rendering
    def text_only() -> int:
        doc = pdfium.PdfDocument(str(report_pdf))
        chars = 0
        for i in range(len(doc)):
            page = doc[i]
            tp = page.get_textpage()
            chars += len(tp.get_text_range())
            tp.close()
            page.close()
        doc.close()
        return chars

    chars, secs = timed(text_only)
    results["text_layer"] = {"pages": n, "seconds": round(secs, 3), "pages_per_s": round(n / secs, 1),
                             "chars": chars}
    # 2. render + text (what a page record needs), at --dpi
    def render() -> int:
        pdf = open_pdf(report_pdf, "report.pdf", max_pages=10_000)
        count = 0
        for page in iter_pages(pdf, "report.pdf", dpi=args.dpi, max_page_pixels=16_000_000):
            page.image.close()
            count += 1
        pdf.close()
        return count

    count, secs = timed(render)
    results["render_and_text"] = {"pages": count, "dpi": args.dpi, "seconds": round(secs, 3),
                                  "pages_per_s": round(count / secs, 2)}
    # 3. OCR of pages without a text layer (rendered at --dpi)
    pdf = open_pdf(scanned_pdf, "scanned.pdf", max_pages=10_000)
    imgs = [p.image for p in iter_pages(pdf, "scanned.pdf", dpi=args.dpi, max_page_pixels=16_000_000)]
    pdf.close()
    ocr_text(imgs[0])  # load the engine outside the timing
    texts, secs = timed(lambda: [ocr_text(im) for im in imgs])
    results["ocr"] = {"pages": len(imgs), "dpi": args.dpi, "seconds": round(secs, 3),
                      "pages_per_s": round(len(imgs) / secs, 3),
                      "read_total_correctly": sum("1234" in t for t in texts)}
    del imgs
    # 4. the whole path: render + text + embed (page image + text) + one upsert, RSS sampled
    def fresh_encoder() -> Any:
        # the text tower caches embeddings per instance: each measured path gets its own, so none is helped
        enc = load_encoder(args.encoder)
        enc.encode_documents(["warm up"])
        gc.collect()
        return enc

    encoder = fresh_encoder()
    store = Store(work / "db", encoder=encoder, collection="bench")
    rss_before = rss_mb()
    with RssSampler() as sampler:
        res, secs = timed(lambda: index_paths(store, report_pdf, assets_dir=work / "assets",
                                              options=LoadOptions(dpi=args.dpi), batch_size=args.batch_size,
                                              on_error="raise"))
    results["mmembed_index"] = {
        "pages": n, "records": store.count(), "seconds": round(secs, 2), "pages_per_s": round(n / secs, 2),
        "rss_mb_before": round(rss_before, 1), "rss_mb_peak": round(sampler.peak, 1),
        "rss_mb_growth": round(sampler.peak - rss_before, 1), "rss_samples": sampler.samples,
        "rss_mb_peak_first_quarter": round(sampler.peak_until(0.25), 1),
        "rss_mb_peak_first_half": round(sampler.peak_until(0.5), 1), "added": res.added}
    # a fifth of the pages for the flatness check: peak growth must not scale with the page count
    small = make_report_pdf(work / "small.pdf", max(10, n // 5))
    encoder = fresh_encoder()
    store_small = Store(work / "db-small", encoder=encoder, collection="bench")
    gc.collect()
    rss_small_before = rss_mb()
    with RssSampler() as sampler_small:
        index_paths(store_small, small, assets_dir=work / "assets-small", options=LoadOptions(dpi=args.dpi),
                    batch_size=args.batch_size, on_error="raise")
    results["mmembed_index_fifth"] = {"pages": max(10, n // 5),
                                      "rss_mb_growth": round(sampler_small.peak - rss_small_before, 1)}
    # 5. peer: LangChain PyPDFLoader + text-only embedding of the same pages
    try:
        from langchain_community.document_loaders import PyPDFLoader
    except ImportError as exc:
        results["peer"] = {"available": False, "reason": f"{exc}; pip install 'mmembed[bench-documents]'"}
    else:
        encoder = fresh_encoder()
        peer_before = rss_mb()
        with RssSampler() as sampler_peer:
            def peer() -> int:
                docs = PyPDFLoader(str(report_pdf)).load()
                encoder.encode_documents([d.page_content for d in docs], batch_size=args.batch_size)
                return len(docs)

            pages, secs = timed(peer)
            load_only, secs_load = timed(lambda: len(PyPDFLoader(str(report_pdf)).load()))
        results["peer"] = {"available": True, "name": "langchain_community PyPDFLoader + text-only embedding",
                           "pages": pages, "seconds": round(secs, 2), "pages_per_s": round(pages / secs, 2),
                           "load_only_pages_per_s": round(load_only / secs_load, 1),
                           "rss_mb_growth": round(sampler_peer.peak - peer_before, 1)}
        results["ratios"] = {
            "mmembed_index_vs_peer_pages_per_s": round(results["mmembed_index"]["pages_per_s"]
                                                       / results["peer"]["pages_per_s"], 3),
            "pdfium_text_vs_pypdf_load_pages_per_s": round(results["text_layer"]["pages_per_s"]
                                                           / results["peer"]["load_only_pages_per_s"], 2)}
    growth, growth_small = results["mmembed_index"]["rss_mb_growth"], results["mmembed_index_fifth"]["rss_mb_growth"]
    full = results["mmembed_index"]
    results["memory_flat"] = {
        "growth_full_mb": growth, "growth_fifth_mb": growth_small,
        "peak_mb_first_quarter_of_run": full["rss_mb_peak_first_quarter"], "peak_mb_whole_run": full["rss_mb_peak"],
        "growth_after_first_quarter_mb": round(full["rss_mb_peak"] - full["rss_mb_peak_first_quarter"], 1)}
    import torch

    payload = {**run_header("documents", load_start=load_start), "encoder": getattr(encoder, "name", args.encoder),
               "torch_threads": torch.get_num_threads(), "results": results}
    write_json(args.out, payload)
    print(f"wrote {args.out}")
    for k, v in results.items():
        print(k, v)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
