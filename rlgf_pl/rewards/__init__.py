"""Rewards: one scalar per trajectory."""

from rlgf_pl.rewards.base import Reward
from rlgf_pl.rewards.lexical import LexicalReward
from rlgf_pl.rewards.sentiment import SentimentReward
from rlgf_pl.rewards.word_frequency import WordFrequencyReward

__all__ = ["LexicalReward", "Reward", "SentimentReward", "WordFrequencyReward"]
