"""ALARM (Grinberg & Shahmohammadi 2026, github Blinorot/ALARM): a reasoning audio LLM.

Reference modules for the single-encoder variant AL-Whisper-Instruct-R, written from ALARM's
public source (facts, not code): see README.md ("ALARM reference") for the file map.
"""
