"""Cluster names: class-based TF-IDF (c-TF-IDF) keywords over each cluster's documents.

A cluster's documents are treated as one long document (its "class"); a word scores high when
it is frequent in that class and rare across the others. This is BERTopic's weighting
(Grootendorst 2022) with its ``reduce_frequent_words`` option: the word counts of each class
are L1-normalised and square-rooted, then multiplied by ``log(1 + A / f)``, where ``A`` is the
average number of words per class and ``f`` the word's count over all classes. The square
root keeps words that every article uses a lot ("year", "time") from outranking the words
that name the topic: on BBC News it turned "game, england, win, year, time" into
"england, game, win, cup, team". English stop words, numbers and words of one or two letters
are dropped, so names are made of words that say something.

scikit-learn is imported inside the functions: `bienc --help` must not pay for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

# Words of three or more letters (any alphabet); digits and underscores break words, so
# "2023", "v2" and "snake_case" give no keyword.
TOKEN_PATTERN = r"(?u)\b[^\W\d_]{3,}\b"

# Words frequent in prose and markup that scikit-learn's list does not hold, and the
# commonest function words of French, German and Spanish (but none that is also an English
# word, such as "pour" or "die"), so that rows in another language do not name a cluster
# "les, der, que".
_EXTRA_STOP_WORDS = frozenset(
    """
    also can could did does doing don just like make makes made may might much must new one
    ones said say says shall should still two use used uses using want way ways will would
    yes http https www com html org
    les des une est que qui dans sur pas avec sont mais ont aux ces cette ses leur comme
    tout faut peut elle ils nous vous
    der das und dem ein eine einer ist nicht mit von auf sich auch für wie
    los las del una por para como pero sus mas este esta
    """.split()
)


def stop_words() -> frozenset[str]:
    """scikit-learn's English stop-word list plus a few words it misses."""
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return frozenset(ENGLISH_STOP_WORDS) | _EXTRA_STOP_WORDS


def class_keywords(
    texts: Sequence[str],
    labels: Sequence[int] | np.ndarray,
    *,
    top: int = 5,
) -> dict[int, list[str]]:
    """The ``top`` c-TF-IDF keywords of each cluster, best first.

    ``texts[i]`` is document i's text and ``labels[i]`` its cluster; label -1 (outliers) takes
    part in the word frequencies but gets no keywords of its own. Clusters whose documents
    hold no countable word get an empty list.
    """
    import numpy as np
    from sklearn.feature_extraction.text import CountVectorizer

    labels = np.asarray(labels)
    clusters = sorted(int(c) for c in np.unique(labels))
    if not clusters:
        return {}
    classes = [
        "\n".join(texts[i] for i in np.flatnonzero(labels == cluster)) for cluster in clusters
    ]
    vectorizer = CountVectorizer(
        lowercase=True, token_pattern=TOKEN_PATTERN, stop_words=sorted(stop_words())
    )
    try:
        counts = vectorizer.fit_transform(classes)
    except ValueError:  # "empty vocabulary": nothing but stop words, numbers or short words
        return {cluster: [] for cluster in clusters if cluster != -1}
    scores = c_tf_idf(counts)
    vocabulary = vectorizer.get_feature_names_out()
    keywords: dict[int, list[str]] = {}
    for row, cluster in enumerate(clusters):
        if cluster == -1:
            continue
        weights = scores[row].toarray().ravel()
        # Highest weight first; ties broken alphabetically so names do not depend on order.
        order = sorted(np.flatnonzero(weights > 0), key=lambda j: (-weights[j], vocabulary[j]))
        keywords[cluster] = [str(vocabulary[j]) for j in order[:top]]
    return keywords


def c_tf_idf(counts):
    """BERTopic's class-based TF-IDF of a (classes x words) count matrix, frequent words reduced."""
    import numpy as np
    from scipy import sparse
    from sklearn.preprocessing import normalize

    counts = sparse.csr_matrix(counts, dtype=np.float64)
    word_totals = np.asarray(counts.sum(axis=0)).ravel()
    average_words = max(float(counts.sum(axis=1).mean()), 1.0)
    idf = np.log(1.0 + average_words / np.maximum(word_totals, 1.0))
    frequencies = normalize(counts, norm="l1", axis=1)
    frequencies.data = np.sqrt(frequencies.data)
    return frequencies @ sparse.diags(idf)


def label_from(keywords: Sequence[str], words: int = 3) -> str:
    """A short human label: the first few keywords, comma-separated."""
    return ", ".join(keywords[:words]) if keywords else "(no keywords)"
