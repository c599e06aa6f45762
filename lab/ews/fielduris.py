"""Every FieldURI value of the EWS schema (UnindexedFieldURIType), as the FieldURI page lists them:
https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/fielduri

A request naming any other value fails schema validation. A valid value that does not apply to an
e-mail message (calendar:, task:, contacts:, …) is left out of the answer, as Exchange leaves out
properties an item does not have."""

FIELD_URIS = frozenset(
    """
    calendar:AdjacentMeetingCount calendar:AdjacentMeetings calendar:AllowNewTimeProposal
    calendar:AppointmentReplyTime calendar:AppointmentSequenceNumber calendar:AppointmentState
    calendar:CalendarItemType calendar:ConferenceType calendar:ConflictingMeetingCount
    calendar:ConflictingMeetings calendar:DateTimeStamp calendar:DeletedOccurrences calendar:Duration
    calendar:End calendar:EndTimeZone calendar:EndTimeZoneId calendar:EndWallClock
    calendar:FirstOccurrence calendar:IsAllDayEvent calendar:IsCancelled calendar:IsMeeting
    calendar:IsOnlineMeeting calendar:IsOrganizer calendar:IsRecurring calendar:IsResponseRequested
    calendar:JoinOnlineMeetingUrl calendar:LastOccurrence calendar:LegacyFreeBusyStatus
    calendar:Location calendar:MeetingRequestWasSent calendar:MeetingTimeZone
    calendar:MeetingWorkspaceUrl calendar:ModifiedOccurrences calendar:MyResponseType
    calendar:NetShowUrl calendar:OnlineMeetingSettings calendar:OptionalAttendees calendar:Organizer
    calendar:OriginalStart calendar:Recurrence calendar:RecurrenceId calendar:RequiredAttendees
    calendar:Resources calendar:Start calendar:StartTimeZone calendar:StartTimeZoneId
    calendar:StartWallClock calendar:TimeZone calendar:UID calendar:When contacts:Alias
    contacts:AssistantName contacts:Birthday contacts:BusinessHomePage contacts:Children
    contacts:Companies contacts:CompanyName contacts:CompleteName contacts:ContactSource
    contacts:Culture contacts:Department contacts:DirectReports contacts:DirectoryId
    contacts:DisplayName contacts:EmailAddresses contacts:FileAs contacts:FileAsMapping
    contacts:Generation contacts:GivenName contacts:HasPicture contacts:ImAddresses contacts:Initials
    contacts:JobTitle contacts:MSExchangeCertificate contacts:Manager contacts:ManagerMailbox
    contacts:MiddleName contacts:Mileage contacts:Nickname contacts:Notes contacts:OfficeLocation
    contacts:PhoneNumbers contacts:PhoneticFirstName contacts:PhoneticFullName
    contacts:PhoneticLastName contacts:Photo contacts:PhysicalAddresses contacts:PostalAddressIndex
    contacts:Profession contacts:SpouseName contacts:Surname contacts:UserSMIMECertificate
    contacts:WeddingAnniversary conversation:Categories conversation:ConversationId
    conversation:ConversationTopic conversation:DraftItemIds conversation:FlagStatus
    conversation:GlobalCategories conversation:GlobalFlagStatus conversation:GlobalHasAttachments
    conversation:GlobalHasIrm conversation:GlobalIconIndex conversation:GlobalImportance
    conversation:GlobalItemClasses conversation:GlobalItemIds conversation:GlobalLastDeliveryTime
    conversation:GlobalMessageCount conversation:GlobalParentFolderId conversation:GlobalSize
    conversation:GlobalUniqueRecipients conversation:GlobalUniqueSenders
    conversation:GlobalUniqueUnreadSenders conversation:GlobalUnreadCount conversation:GroupingAction
    conversation:HasAttachments conversation:HasClutter conversation:HasIrm conversation:IconIndex
    conversation:Importance conversation:InstanceKey conversation:ItemClasses conversation:ItemIds
    conversation:LastDeliveryTime conversation:LastModifiedTime conversation:MessageCount
    conversation:NextPredictedAction conversation:Preview conversation:Size
    conversation:UniqueRecipients conversation:UniqueSenders conversation:UniqueUnreadSenders
    conversation:UnreadCount distributionlist:Members folder:ChildFolderCount folder:DisplayName
    folder:EffectiveRights folder:FolderClass folder:FolderId folder:ManagedFolderInformation
    folder:ParentFolderId folder:PermissionSet folder:SearchParameters folder:SharingEffectiveRights
    folder:TotalCount folder:UnreadCount item:ArchiveTag item:Attachments item:BlockStatus item:Body
    item:Categories item:ConversationId item:Culture item:DateTimeCreated item:DateTimeReceived
    item:DateTimeSent item:DisplayCc item:DisplayTo item:EffectiveRights item:EntityExtractionResult
    item:Flag item:GroupingAction item:HasAttachments item:HasBlockedImages item:IconIndex
    item:Importance item:InReplyTo item:InstanceKey item:InternetMessageHeaders item:IsAssociated
    item:IsClutter item:IsDraft item:IsFromMe item:IsResend item:IsSubmitted item:IsUnmodified
    item:ItemClass item:ItemId item:LastModifiedName item:LastModifiedTime item:MimeContent
    item:MimeContentUTF item:NextPredictedAction item:NormalizedBody item:ParentFolderId
    item:PredictedActionReasons item:Preview item:ReminderDueBy item:ReminderIsSet
    item:ReminderMinutesBeforeStart item:ReminderNextTime item:ResponseObjects item:RetentionDate
    item:RightsManagementLicenseData item:Sensitivity item:Size item:StoreEntryId item:Subject
    item:TextBody item:UniqueBody item:WebClientEditFormQueryString item:WebClientReadFormQueryString
    meeting:AssociatedCalendarItemId meeting:HasBeenProcessed meeting:IsDelegated meeting:IsOutOfDate
    meeting:ProposedEnd meeting:ProposedStart meeting:ResponseType message:ApprovalRequestData
    message:BccRecipients message:CcRecipients message:ConversationIndex message:ConversationTopic
    message:From message:InternetMessageId message:IsDeliveryReceiptRequested message:IsRead
    message:IsReadReceiptRequested message:IsResponseRequested message:ReceivedBy
    message:ReceivedRepresenting message:References message:ReminderMessageData message:ReplyTo
    message:Sender message:ToRecipients message:VotingInformation persona:AssistantNames
    persona:AssistantPhoneNumbers persona:Attributions persona:Birthdays persona:Bodies
    persona:BusinessAddresses persona:BusinessHomePages persona:BusinessPhoneNumbers
    persona:CallbackPhones persona:CarPhones persona:Children persona:CompanyName persona:CompanyNames
    persona:CreationTime persona:Departments persona:DisplayName persona:DisplayNamePrefix
    persona:DisplayNamePrefixes persona:DisplayNames persona:EmailAddress persona:EmailAddresses
    persona:Emails persona:ExtendedProperties persona:FileAs persona:FileAsId persona:FileAsIds
    persona:FileAses persona:FolderIds persona:Generations persona:GivenName persona:GivenNames
    persona:Hobbies persona:HomeAddresses persona:HomeCity persona:HomeFaxes persona:HomePhones
    persona:ImAddress persona:ImAddresses persona:Initials persona:Locations persona:Managers
    persona:MiddleNames persona:MobilePhones persona:Nicknames persona:OfficeLocations
    persona:OrganizationMainPhones persona:OtherAddresses persona:OtherFaxes persona:OtherPhones
    persona:OtherTelephones persona:Pagers persona:PersonaId persona:PersonaObjectStatus
    persona:PersonaType persona:PersonalHomePages persona:PhoneNumber persona:PostalAddress
    persona:Professions persona:RadioPhones persona:RelevanceScore persona:School persona:SpouseNames
    persona:Surname persona:Surnames persona:TelexNumbers persona:Title persona:Titles
    persona:WeddingAnniversaries persona:WorkCity persona:WorkFaxes persona:YomiCompanyName
    persona:YomiCompanyNames persona:YomiFirstName persona:YomiFirstNames persona:YomiLastName
    persona:YomiLastNames postitem:PostedTime task:ActualWork task:AssignedTime task:BillingInformation
    task:ChangeCount task:Companies task:CompleteDate task:Contacts task:DelegationState task:Delegator
    task:DueDate task:IsAssignmentEditable task:IsComplete task:IsRecurring task:IsTeamTask
    task:Mileage task:Owner task:PercentComplete task:Recurrence task:StartDate task:Status
    task:StatusDescription task:TotalWork
    item:PolicyTag folder:DistinguishedFolderId folder:PolicyTag folder:ArchiveTag folder:ReplicaList
    meetingRequest:MeetingRequestType meetingRequest:IntendedFreeBusyStatus
    """.split()
)
# The last line's values are in types.xsd (UnindexedFieldURIType) but missing from the page's table.

#: IndexedFieldURI values (DictionaryURIType, IndexedFieldURI page:
#: https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/indexedfielduri).
#: The page lists "contacts:PhysicalAddress:Country"; types.xsd and clients use "...:CountryOrRegion".
INDEXED_FIELD_URIS = frozenset(
    """
    item:InternetMessageHeader contacts:ImAddress contacts:PhysicalAddress:Street
    contacts:PhysicalAddress:City contacts:PhysicalAddress:State contacts:PhysicalAddress:Country
    contacts:PhysicalAddress:CountryOrRegion contacts:PhysicalAddress:PostalCode contacts:PhoneNumber
    contacts:EmailAddress distributionlist:Members:Member
    """.split()
)
