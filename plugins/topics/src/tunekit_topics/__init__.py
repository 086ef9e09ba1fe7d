"""tunekit-topics: BERTopic-style topic modeling through tunekit's API.

``tunekit.finetune(task="topics", data=docs)`` embeds the documents with any tunekit
backbone (optionally adapting it to the corpus first with the shared trainer), reduces
the embeddings, clusters them and describes each cluster by class-based TF-IDF.
"""

from .coherence import topic_diversity, topic_npmi
from .run import TopicRun
from .task import TopicsConfig, TopicsTask

__all__ = ["TopicRun", "TopicsConfig", "TopicsTask", "topic_diversity", "topic_npmi"]
