"""Rewards for reinforcement learning: the judge as a scalar reward (`judge_reward`, `JudgeReward`, for TRL and
PPO), reward-model scoring (`reward_model`), PPO's reward sources (`sources`) and the HTTP reward server
(`server`). Importing the package imports neither torch nor fastapi.
"""

from .judge_reward import JudgeReward, judge_reward

__all__ = ["JudgeReward", "judge_reward"]
