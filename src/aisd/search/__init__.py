"""Lexical search and ranking: tokenization, Okapi BM25, rank fusion (RRF, alpha) and the Reranker protocol."""

from aisd.search.bm25 import BM25Config, BM25Hit, BM25Index
from aisd.search.fusion import alpha_fusion, reciprocal_rank_fusion
from aisd.search.rerank import RemoteReranker, Reranker, RerankResult
from aisd.search.tokenize import Tokenizer

__all__ = ["BM25Config", "BM25Hit", "BM25Index", "RemoteReranker", "RerankResult", "Reranker", "Tokenizer",
           "alpha_fusion", "reciprocal_rank_fusion"]
