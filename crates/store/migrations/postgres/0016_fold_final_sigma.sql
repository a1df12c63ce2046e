-- Text folds write Greek final sigma as σ (`sql::fold`): lowercasing `ΣΊΣΥΦΟΣ` ends it in ς, and
-- `ΣΊΣ*` in ς too, which no stored fold then starts with. The folds stored before are mended
-- the same way. Same in migrations/sqlite/0016_fold_final_sigma.sql.
UPDATE sessions SET
    user_username_fold = replace(user_username_fold, 'ς', 'σ'),
    user_name_fold = replace(user_name_fold, 'ς', 'σ'),
    user_email_fold = replace(user_email_fold, 'ς', 'σ'),
    end_user_name_fold = replace(end_user_name_fold, 'ς', 'σ'),
    end_user_email_fold = replace(end_user_email_fold, 'ς', 'σ'),
    native_username_fold = replace(native_username_fold, 'ς', 'σ'),
    resource_name_fold = replace(resource_name_fold, 'ς', 'σ'),
    connector_name_fold = replace(connector_name_fold, 'ς', 'σ')
WHERE user_username_fold LIKE '%ς%'
   OR user_name_fold LIKE '%ς%'
   OR user_email_fold LIKE '%ς%'
   OR end_user_name_fold LIKE '%ς%'
   OR end_user_email_fold LIKE '%ς%'
   OR native_username_fold LIKE '%ς%'
   OR resource_name_fold LIKE '%ς%'
   OR connector_name_fold LIKE '%ς%';
