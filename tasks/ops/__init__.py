"""Operations on the deployed model from a shell: status, models, promote, rollback."""
